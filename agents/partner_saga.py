"""The saga agent: a batch of saga events at a time, each saga's events in order; one durable
write for the batch; then the batch is acknowledged.

For each event of a batch (Faust's `noack_take`: up to SAGA_BATCH_MAX events, gathered for at
most SAGA_BATCH_WITHIN_S), the agent reads the saga's state (the batch's own writes first,
then the store; decoded states are kept for the saga's next event), decides (domain/), and
queues what the decision leads to in the batch (tables/writer.py): the saga's new state, its
commands as one record on the outbox (wire.internal.OutboxEntry, in the saga's partition, so
per saga the outbox holds them in the order the saga decided them), events for other sagas,
dead letters, the deadline index's moves. The table writer then makes the batch durable in one
go (one changelog record batch and one outbox record batch per partition, one RocksDB
WriteBatch per partition), and only then are the batch's events acknowledged. The agent never
waits for Pulsar or a participant: the outbox bridge (bridges/outbox.py) sends the commands on.

An event that fails on its own account (it does not parse, a bug, a stored state that no
longer parses) is dead-lettered with the reason, in the same batch, and nothing else of it is
kept (each event's writes are collected apart, `Batch.scope`). A batch that cannot be made
durable stops the worker without acknowledging anything (`StoreFailed`): the partitions' next
owner replays the events, and the saga, which recognises an event it applied, writes the same
state and the same commands (same ids) again (domain/transition.py); participants deduplicate
by command id. A crash anywhere is the same replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import cast

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from agents.dead_letters import dead_letter_in
from domain import SagaState, decide
from domain.lifecycle import Tombstone, bury, on_tombstone, retainable
from domain.messages import PARTICIPANT_EVENT_TYPES
from runtime.app import app, cfg
from runtime.faust_patches import acknowledge, manual_ack
from runtime.metrics import METRICS
from runtime.policies import definition_from, definitions_from
from streams.partner_saga import outbox, partner_routing, saga_events
from tables.partner_saga import DEADLINES, WRITER, sagas
from tables.writer import Batch, TableWriter, WriteFailed
from wire.internal import ForgetSaga, OutboxEntry, PartnerRouted, RoutingNote, SagaEnvelope
from wire.routing import email_key
from wire.stored import OUTBOX, SAGA_STATE, TOMBSTONE

__all__ = ["DEFINITION", "DEFINITIONS", "StoreFailed", "handle_batch", "run_sagas"]

log = logging.getLogger(__name__)
DEFINITIONS = definitions_from(cfg)  # a saga keeps the flow and version it started with
DEFINITION = definition_from(cfg, DEFINITIONS)  # new sagas: the newest version of the profile's flow
SAGAS = sagas.name


class StoreFailed(RuntimeError):
    """A batch could not be made durable: the worker stops (see the module docstring)."""


class DecodedStates:
    """Saga id -> (stored bytes, the state they decode to), for the sagas worked on lately: a
    saga's next event skips the decoding when the stored bytes are still the same (another
    worker that owned the partition meanwhile wrote other bytes). At most `size` entries, the
    oldest dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._states: dict[bytes, tuple[bytes, SagaState]] = {}

    def decode(self, key: bytes, raw: bytes) -> SagaState:
        known = self._states.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        state = SAGA_STATE.load(raw)
        self.keep(key, raw, state)
        return state

    def keep(self, key: bytes, raw: bytes, state: SagaState) -> None:
        states = self._states
        states.pop(key, None)
        if len(states) >= self.size:
            del states[next(iter(states))]
        states[key] = (raw, state)

    def clear(self) -> None:
        self._states.clear()


#: ~15 KB a saga (2.4 KB stored, ~12.7 KB decoded): SAGA_STATE_CACHE entries cost that much RSS.
DECODED = DecodedStates(cfg.saga_state_cache)

# Only this agent acknowledges these events, once their batch is durable: a stream skipping
# one during a rebalance leaves it to be read again (runtime/faust_patches.py).
manual_ack(saga_events.get_topic_name())


@app.agent(saga_events, name="partner-saga")
async def run_sagas(stream: StreamT[bytes]) -> None:
    # An agent's stream is a faust.Stream: StreamT does not declare noack_take().
    events = cast("faust.Stream[bytes]", stream)
    async for batch in events.noack_take(cfg.saga_batch_max, within=cfg.saga_batch_within_s):
        taken = cast("Sequence[EventT[bytes]]", batch)  # noack_take yields the events themselves
        try:
            await handle_batch(taken)
        except StoreFailed as exc:
            # Not acknowledged: the partitions' next owner replays the batch (Faust would
            # restart this agent alone, and its next commit would move past it).
            log.critical("%s; stopping the worker", exc)
            await app.crash(exc)
            return
        for event in taken:
            await acknowledge(events, event)


async def handle_batch(events: Sequence[EventT[bytes]], writer: TableWriter | None = None) -> None:
    """Decide every event of `events` and make the batch durable; raises StoreFailed (nothing
    of the batch durable for sure) when the writer refuses it."""
    writer = writer or WRITER
    batch = writer.batch()
    for event in events:
        scope = batch.scope()
        try:
            _plan(event, scope)
        except Exception as exc:  # a bug, or a stored state that no longer parses
            log.exception("saga event at %s offset %d failed", event.message.tp, event.message.offset)
            scope = batch.scope()  # nothing of it is kept but its dead letter
            original, origin = event.value, saga_events.get_topic_name()
            with contextlib.suppress(ValueError):  # the participant's message as received, if any
                original, origin = _as_received(event, SagaEnvelope.model_validate_json(event.value))
            dead_letter_in(scope, original, f"cannot process: {exc!r}"[:1000], origin=origin, key=event.key)
        batch.keep(scope)
    try:
        await writer.commit(batch)
    except WriteFailed as exc:
        DECODED.clear()  # what it kept may be states that were never stored
        first, last = events[0].message, events[-1].message
        raise StoreFailed(f"storing a batch of {len(events)} saga events ({first.tp} offset {first.offset} "
                          f"to {last.tp} offset {last.offset}) failed: {exc}") from exc
    METRICS.inc("batches_total")
    METRICS.inc("batch_events_total", len(events))


def _plan(event: EventT[bytes], batch: Batch) -> None:
    """Decide one saga event; queue in `batch` what it leads to."""
    if event.value.startswith(ForgetSaga.PREFIX):
        _forget(event, batch)
        return
    topic = saga_events.get_topic_name()
    saga_id = event.key.decode() if event.key else ""
    try:
        envelope = SagaEnvelope.model_validate_json(event.value)
    except ValidationError as exc:
        dead_letter_in(batch, event.value, f"invalid saga event: {exc.errors()[0]['msg']}",
                       origin=topic, key=event.key)
        return
    ev = envelope.event
    if ev.saga_id != saga_id:
        dead_letter_in(batch, event.value, f"key {saga_id!r} is not the event's saga {ev.saga_id!r}",
                       origin=topic, key=event.key)
        return
    partition = event.message.partition
    key = saga_id.encode()
    raw_state = batch.get(SAGAS, partition, key)
    if raw_state is not None and Tombstone.is_one(raw_state):
        _at_tombstone(event, envelope, raw_state, batch)
        return
    state = DECODED.decode(key, raw_state) if raw_state is not None else None
    now = time.time()
    # A flow version not deployed raises UnknownDefinition: the event is dead-lettered with why.
    defn = DEFINITION if state is None else DEFINITIONS.of(state)
    decision = decide(state, ev, now, defn, generation=envelope.generation or 1)
    METRICS.inc("events_total", type=ev.type, outcome=decision.outcome)
    if decision.outcome == "rejected" and envelope.by_partner and state is None:
        _to_partner_index(envelope, batch)
        return
    if decision.outcome == "rejected":
        original, origin = _as_received(event, envelope)
        dead_letter_in(batch, original, f"no saga to match: {decision.reason}", origin=origin, key=event.key,
                       message_id=ev.event_id)
        return
    new = decision.state
    assert new is not None
    if decision.changed:
        stored: bytes | None = SAGA_STATE.dump(new)
        old_deadline = state.deadline if state else None
    elif decision.outcome == "duplicate" and raw_state is not None:
        # A replay after a crash: the local store may hold a state whose changelog record
        # never reached Kafka. Writing the same bytes again makes the changelog whole (and
        # puts the index entry back, were it lost).
        stored, old_deadline = raw_state, None
    else:
        stored, old_deadline = None, None
    commands = decision.commands
    if decision.outcome == "duplicate":
        commands = tuple(c.model_copy(update={"repeat": True}) for c in commands)
    if decision.expected:
        # A participant's own announcement of a step the saga has (integraciones' PartnerCreado
        # after its 201): recorded in the saga (a redelivery is a duplicate) and counted.
        METRICS.inc("expected_duplicates_total", type=ev.type)
    elif decision.outcome == "ignored":
        log.info("saga %s ignored %s %s: %s", saga_id, ev.type, ev.event_id, decision.reason)
        if ev.type in PARTICIPANT_EVENT_TYPES:
            # A reply the saga cannot use (stale, late, naming another partner): recorded in
            # the saga (a redelivery is then a duplicate) and shown to operators, with why.
            original, origin = _as_received(event, envelope)
            dead_letter_in(batch, original, f"ignored by saga {saga_id}: {decision.reason}", origin=origin,
                           key=event.key, message_id=ev.event_id)
    if ev.type == "ErasureRequested" and decision.outcome == "applied" and state is not None:
        _forget_email(state, now, batch)
    if stored is not None:
        batch.put(SAGAS, partition, key, stored)
        # The index first, then the state (in the writer's local step): a crash between the
        # two leaves an entry the timer drops, never a waiting saga without one.
        batch.then(partial(DEADLINES.move, partition, saga_id, old_deadline, new.deadline))
        if new.terminal:
            batch.then(partial(DEADLINES.finished, partition, saga_id, new.updated_at))
        DECODED.keep(key, stored, new)
    if commands:
        batch.send(outbox.get_topic_name(), key, OUTBOX.dump(OutboxEntry(commands=commands)),
                   partition=partition)
    for t in decision.transitions:
        if t.from_status != t.to_status:  # an erasure is in the history, but changes no status
            METRICS.inc("transitions_total", to=str(t.to_status))
    for cmd in decision.commands:
        METRICS.inc("commands_total", type=cmd.type)
    if envelope.received_at is not None and ev.type != "DeadlineReached":
        # From the bridge's receipt (or the HTTP request) to the decision.
        produced = event.message.timestamp  # the record's CreateTime, in seconds
        METRICS.observe_step(now - envelope.received_at, now - produced if produced else None)


def _as_received(event: EventT[bytes], envelope: SagaEnvelope) -> tuple[bytes, str]:
    """What a dead letter of this event carries: the participant's message as it came in,
    and where from; for the orchestrator's own events, the event and its topic."""
    if envelope.raw is not None:
        return envelope.raw.encode(), envelope.origin or saga_events.get_topic_name()
    return event.value, envelope.origin or saga_events.get_topic_name()


def _to_partner_index(envelope: SagaEnvelope, batch: Batch) -> None:
    """An event sent to the partner's own saga, which does not exist (the partner belongs to
    an HTTP-started saga): the partner index finds its saga, or dead-letters it."""
    ev = envelope.event
    fields = ev.model_dump(mode="json", exclude={"event_id", "saga_id", "correlation_id", "type"})
    # Events such as PartnerCreationFailed have no partner field of their own: the partner
    # they were routed by is in the message as received.
    partner_id = fields.get("partner_id")
    if not partner_id:
        received = json.loads(envelope.raw or "{}")
        partner_id = received.get("data", {}).get("partner_id")
    msg = PartnerRouted(type=ev.type, event_id=ev.event_id, saga_id=None, correlation_id=None,
                        partner_id=partner_id, fields=fields, raw=envelope.raw or "",
                        origin=envelope.origin or "", received_at=envelope.received_at or time.time(),
                        tried=ev.saga_id)
    METRICS.inc("routed_to_partner_index_total", type=ev.type)
    batch.send(partner_routing.get_topic_name(), partner_id.encode(), msg.model_dump_json().encode())


def _forget(event: EventT[bytes], batch: Batch) -> None:
    """Retention: each saga named leaves the live tables if it is still finished at the
    version the retention timer saw, and for retention (domain.lifecycle.retainable). Its
    state is replaced by its tombstone (ids, end status, no personal data), which answers a
    later start for its business key; its snapshot stays."""
    try:
        msg = ForgetSaga.model_validate_json(event.value)
    except ValidationError as exc:
        dead_letter_in(batch, event.value, f"invalid retention message: {exc.errors()[0]['msg']}",
                       origin=saga_events.get_topic_name(), key=event.key)
        return
    partition = event.message.partition
    now = time.time()
    for saga_id, version, _partner_id in msg.forget:
        key = saga_id.encode()
        raw = batch.get(SAGAS, partition, key)
        if raw is None or Tombstone.is_one(raw):
            continue  # gone already
        state = DECODED.decode(key, raw)
        if not retainable(state) or state.version != version:
            continue  # changed since, or waits for a person: its new expiry entry decides
        batch.then(partial(DEADLINES.forget, partition, saga_id, state.updated_at))
        batch.put(SAGAS, partition, key, TOMBSTONE.dump(bury(state, now)))
        METRICS.inc("sagas_expired_total")
        _forget_email(state, now, batch)


def _forget_email(state: SagaState, now: float, batch: Batch) -> None:
    """An Alpes saga's email claim (bridges/alpes.py) lives in the email's partition; it
    matched the partner to the saga while it was being created, and is personal data: it goes
    when the saga is retained or its data erased. (The partner index entry stays: a later
    PartnerCreated for the partner finds the saga, and is a duplicate of it.)"""
    if state.flow != "alpes-partner" or state.erased_at is not None:
        return
    forget_email = RoutingNote(note="forget-email", email=state.partner.email.strip().lower(),
                               saga_id=state.saga_id, at=now)
    batch.send(partner_routing.get_topic_name(), email_key(state.partner.email).encode(),
               forget_email.model_dump_json().encode())


def _at_tombstone(event: EventT[bytes], envelope: SagaEnvelope, raw: bytes, batch: Batch) -> None:
    """An event for a retained saga (domain.lifecycle.on_tombstone): passed on to the
    business key's newer saga, opening that saga (a start after the dedupe horizon), or
    dead-lettered as a duplicate of the finished saga, with the reason."""
    tomb = TOMBSTONE.load(raw)
    ev = envelope.event
    verdict = on_tombstone(tomb, ev, time.time(), cfg.saga_dedupe_horizon_s, by_key=envelope.by_partner)
    METRICS.inc("events_at_tombstone_total", type=ev.type, verdict=verdict.kind)
    if verdict.kind == "duplicate":
        original, origin = _as_received(event, envelope)
        dead_letter_in(batch, original, verdict.reason, origin=origin, key=event.key, message_id=ev.event_id)
        return
    assert verdict.saga_id is not None
    if verdict.tombstone is not None:  # it opens the key's next saga: point the tombstone to it
        batch.put(SAGAS, event.message.partition, tomb.saga_id.encode(),
                  TOMBSTONE.dump(verdict.tombstone))
        log.info("saga %s: %s, saga %s", tomb.saga_id, verdict.reason, verdict.saga_id)
    moved = envelope.model_copy(update={
        "event": ev.model_copy(update={"saga_id": verdict.saga_id}),
        "generation": verdict.generation if verdict.generation is not None else envelope.generation,
    })
    batch.send(saga_events.get_topic_name(), verdict.saga_id.encode(), moved.model_dump_json().encode())
