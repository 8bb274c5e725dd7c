"""The partner -> saga index: finds the saga of a participant event that names only a partner.

A PartnerCreated that names a saga (sagaid, or the correlationid of an HTTP-started saga)
registers its partner with that saga; one that names none opens the partner's own saga.
A partner has one partner-creation saga: a second PartnerCreated for it goes to the saga it
already has, which records it as a duplicate.

The Alpes services name only the partner, never a saga (PARTICIPANTS=alpes). A PartnerCreado
for a partner the index does not know may be one a saga asked for (its HTTP answer not here
yet, or the Avro command, which has no answer) or one nobody asked for: the partner is
parked (its entry marked pending, its events kept, in order, up to PARK_LIMIT), looked up at
integraciones (bridges/alpes.py) and matched by email to the saga that claimed that email
before creating it, or else given a saga of its own; then its parked events go there. A
created partner's HTTP answer, naming its saga, settles it as well.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from agents.dead_letters import dead_letter_in
from agents.ports import PORTS
from domain import ids
from runtime.app import app, cfg
from runtime.faust_patches import acknowledge, manual_ack
from runtime.metrics import METRICS
from streams.partner_saga import partner_routing, saga_events
from tables.partner_saga import WRITER, partner_sagas
from tables.writer import Batch, TableWriter, WriteFailed
from wire.cloudevents import Inbound
from wire.internal import PartnerRouted, RoutingNote, SagaEnvelope
from wire.routing import email_key, saga_for
from wire.stored import INDEXED_SAGA, PARKED, IndexedSaga, ParkedEvents

__all__ = ["PARK_LIMIT", "route_batch", "route_partner_events"]

log = logging.getLogger(__name__)

#: A pending partner's entry starts with this (a saga id never does).
PENDING = b"~"
#: Events kept for a partner while it is looked up; past it they are dead-lettered.
PARK_LIMIT = 32
#: A pending partner is looked up again when one of its events comes after this long.
LOOKUP_AGAIN_S = 30.0


# Only this agent acknowledges these events, once what it wrote for them is durable: a stream
# skipping one during a rebalance leaves it to be read again (runtime/faust_patches.py).
manual_ack(partner_routing.get_topic_name())
TABLE = partner_sagas.name


@app.agent(partner_routing, name="partner-routing")
async def route_partner_events(stream: StreamT[bytes]) -> None:
    """A batch of events at a time (tables/writer.py): each one routed, parked or dead-lettered
    with the reason; the batch's index entries and messages made durable in one write; then
    the batch acknowledged. An event whose handling raises is dead-lettered with the error
    (nothing is lost silently); a batch Kafka refuses stops the worker without acknowledging,
    so the partitions' next owner replays it."""
    events = cast("faust.Stream[bytes]", stream)
    async for batch in events.noack_take(cfg.saga_batch_max, within=cfg.saga_batch_within_s):
        taken = cast("list[EventT[bytes]]", batch)  # noack_take yields the events themselves
        try:
            await route_batch(taken)
        except WriteFailed as exc:
            log.critical("partner routing: writing a batch of %d events failed (%s); stopping the worker",
                         len(taken), exc)
            await app.crash(exc)
            return
        for event in taken:
            await acknowledge(events, event)


async def route_batch(events: list[EventT[bytes]], writer: TableWriter | None = None) -> None:
    """Route every event of `events` and make the batch durable (raises WriteFailed)."""
    writer = writer or WRITER
    batch = writer.batch()
    for event in events:
        scope = batch.scope()
        try:
            _route(event, scope)
        except Exception as exc:
            log.exception("partner routing: the event at %s offset %d failed", event.message.tp,
                          event.message.offset)
            scope = batch.scope()
            dead_letter_in(scope, _original(event.value), f"cannot route: {exc!r}"[:1000],
                           origin=partner_routing.get_topic_name(), key=event.key)
        batch.keep(scope)
    await writer.commit(batch)


@dataclass
class _Here:
    """The partner index in the partition of the event being routed, through its batch."""

    batch: Batch
    partition: int

    def get(self, key: str) -> bytes | None:
        return self.batch.get(TABLE, self.partition, key.encode())

    def put(self, key: str, value: bytes | None) -> None:
        self.batch.put(TABLE, self.partition, key.encode(), value)

    def saga(self, key: str) -> str | None:
        """The saga a partner (or an email claim) is known to be, if it is (not parked)."""
        raw = self.get(key)
        return None if raw is None else INDEXED_SAGA.load(raw).saga_id

    def put_saga(self, key: str, saga_id: str) -> None:
        self.put(key, INDEXED_SAGA.dump(IndexedSaga(saga_id=saga_id)))


def _original(value: bytes) -> bytes:
    """The participant's message as received, when the routing message carries it."""
    try:
        return PartnerRouted.model_validate_json(value).raw.encode() or value
    except ValidationError:
        return value


def _route(event: EventT[bytes], batch: Batch) -> None:
    here = _Here(batch, event.message.partition)
    if event.value.startswith(RoutingNote.PREFIX):
        _note(event, here)
        return
    try:
        msg = PartnerRouted.model_validate_json(event.value)
    except ValidationError as exc:
        dead_letter_in(here.batch, event.value, f"invalid routing message: {exc.errors()[0]['msg']}",
                       origin=partner_routing.get_topic_name())
        return
    known_raw = here.get(msg.partner_id)
    if known_raw is not None and known_raw.startswith(PENDING):
        _pending(msg, known_raw, here)
        return
    known = INDEXED_SAGA.load(known_raw).saga_id if known_raw is not None else None
    if msg.type == "ForgetPartner":
        # A retention message of an earlier version: the entry stays now, so that a later
        # PartnerCreated for the partner finds its retained saga's tombstone (a duplicate).
        return
    if known is None and _names_only_its_partner(msg):
        _park(msg.partner_id, [msg], here, lookup=True)
        return
    saga_id = saga_for(msg, known)
    if saga_id is not None and saga_id == msg.tried and known != saga_id:
        # The partner's own saga, already tried: it does not exist. (Unless the index
        # registered the partner with it since: an Alpes partner's own saga is opened
        # once its lookup settles, after which this event follows the opening one.)
        saga_id = None
    if saga_id is None:
        dead_letter_in(here.batch, msg.raw.encode(), f"no saga to match: no saga for partner "
                       f"{msg.partner_id}", origin=msg.origin, message_id=msg.event_id)
        return
    # Only sagas whose id the partner id does not give (HTTP-started ones) need an entry.
    # Written again on a replay too: the changelog must hold it even if the first write
    # reached only the local store before a crash.
    _forward(msg, saga_id, here, register=msg.type == "PartnerCreated" and known in (None, saga_id)
             and saga_id != ids.saga_id_for_partner(msg.partner_id))


def _names_only_its_partner(msg: PartnerRouted) -> bool:
    """An Alpes PartnerCreado: no saga, no correlation, not even the partner's data."""
    return msg.type == "PartnerCreated" and not msg.saga_id and not msg.correlation_id \
        and not msg.fields.get("partner")


def _park(partner_id: str, parked: list[PartnerRouted], here: _Here, *, lookup: bool,
          since: float | None = None) -> None:
    now = time.time()
    if lookup:
        here.batch.then(partial(PORTS.partners.lookup, partner_id))  # once the entry is durable
        since = now
    value = ParkedEvents(since=since or now, parked=[m.model_dump(mode="json") for m in parked])
    here.put(partner_id, PENDING + PARKED.dump(value))
    METRICS.inc("partners_parked_total" if len(parked) == 1 else "events_parked_total")


def _parked(raw: bytes) -> tuple[float, list[PartnerRouted]]:
    value = PARKED.load(raw[len(PENDING):])
    return value.since, [PartnerRouted.model_validate(m) for m in value.parked]


def _pending(msg: PartnerRouted, raw: bytes, here: _Here) -> None:
    """An event of a partner being looked up: a created partner's answer naming its saga
    settles it; anything else waits with the others."""
    since, parked = _parked(raw)
    if msg.type == "PartnerCreated" and msg.saga_id:
        _settle(msg.partner_id, msg.saga_id, [msg, *parked], here)
        return
    if len(parked) >= PARK_LIMIT:
        dead_letter_in(here.batch, msg.raw.encode(), f"no saga to match: partner {msg.partner_id} is still "
                       f"being looked up and already has {PARK_LIMIT} events waiting", origin=msg.origin,
                       message_id=msg.event_id)
        return
    again = time.time() - since > LOOKUP_AGAIN_S
    _park(msg.partner_id, [*parked, msg], here, lookup=again, since=since)


def _settle(partner_id: str, saga_id: str, events: list[PartnerRouted], here: _Here,
            partner: dict[str, Any] | None = None) -> None:
    """The partner is saga `saga_id`'s: register it, and send its events there in order."""
    here.put_saga(partner_id, saga_id)
    for m in events:
        fields = m.fields
        if m.type == "PartnerCreated" and partner and not fields.get("partner"):
            fields = {**fields, "partner": partner}
        _forward(m.model_copy(update={"fields": fields}), saga_id, here)


def _forward(msg: PartnerRouted, saga_id: str, here: _Here, *, register: bool = False) -> None:
    """Send `msg` to saga `saga_id` (and, with `register`, record its partner as the saga's),
    or dead-letter it when it is not a valid event."""
    inbound = Inbound(msg.type, msg.event_id, msg.saga_id, msg.correlation_id, msg.partner_id, msg.fields)
    try:
        envelope = SagaEnvelope(event=inbound.event(saga_id), raw=msg.raw, origin=msg.origin,
                                received_at=msg.received_at)
    except ValidationError as exc:
        dead_letter_in(here.batch, msg.raw.encode(), f"invalid event: {exc.errors()[0]['msg']}",
                       origin=msg.origin, message_id=msg.event_id)
        return
    if register:
        here.put_saga(msg.partner_id, saga_id)
    METRICS.inc("routed_total", type=msg.type)
    here.batch.send(saga_events.get_topic_name(), saga_id.encode(), envelope.model_dump_json().encode())


def _note(event: EventT[bytes], here: _Here) -> None:
    try:
        note = RoutingNote.model_validate_json(event.value)
    except ValidationError as exc:
        dead_letter_in(here.batch, event.value, f"invalid routing note: {exc.errors()[0]['msg']}",
                       origin=partner_routing.get_topic_name())
        return
    if note.note == "claim-email" and note.email and note.saga_id:
        here.put_saga(email_key(note.email), note.saga_id)
    elif note.note == "forget-email" and note.email:
        if here.saga(email_key(note.email)) == note.saga_id:
            here.put(email_key(note.email), None)
    elif note.note == "looked-up" and note.email and note.partner_id:
        # Whose partner: the saga that claimed its email, else a saga of its own.
        saga_id = here.saga(email_key(note.email)) or ids.saga_id_for_partner(note.partner_id)
        settled = note.model_copy(update={"note": "claimed", "saga_id": saga_id})
        here.batch.send(partner_routing.get_topic_name(), note.partner_id.encode(),
                        settled.model_dump_json().encode())
    elif note.note == "claimed" and note.partner_id:
        raw = here.get(note.partner_id)
        if raw is None or not raw.startswith(PENDING):
            return  # settled already (its HTTP answer came first)
        _, parked = _parked(raw)
        if note.saga_id is None:
            here.put(note.partner_id, None)
            for m in parked:
                dead_letter_in(here.batch, m.raw.encode(), f"no saga to match: integraciones does not know "
                               f"partner {note.partner_id}", origin=m.origin, message_id=m.event_id)
            return
        _settle(note.partner_id, note.saga_id, parked, here, note.partner)
