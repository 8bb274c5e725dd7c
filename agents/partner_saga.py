"""The saga agent: for each saga event, load the saga, decide, store, send.

Commit order (at-least-once): everything that can fail on the event's own account (parsing,
deciding, encoding the new state and the commands) happens before the first write. Then the
table write (one changelog record; the deadline index is local, tables/deadline_index.py) and
the hand-over of the already encoded commands to the Pulsar bridge, with nothing between
them that can fail. The event is acknowledged only when Pulsar acknowledged its commands (at
once if it has none), and only after every event before it in its partition
(agents/acks.py); Faust flushes the producer before it commits an acknowledged offset.

An event that fails before the write is dead-lettered with the reason and acknowledged,
rather than left to block the partition: nothing of it was stored. A write that fails stops
the worker without acknowledging the event (`StoreFailed`): its partitions' next owner
replays it, and the saga, which recognises an event it applied, re-sends the same commands
with the same ids (domain/transition.py); participants deduplicate by command id. A crash
anywhere in between is the same replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from agents.acks import InOrderAcks
from agents.dead_letters import dead_letter
from agents.ports import PORTS
from domain import SagaState, decide
from domain.lifecycle import Tombstone, bury, on_tombstone, retainable
from domain.messages import PARTICIPANT_EVENT_TYPES, Command
from domain.state import Deadline
from runtime.app import app, cfg
from runtime.faust_patches import acknowledge, manual_ack
from runtime.metrics import METRICS
from runtime.policies import definition_from, definitions_from
from streams.partner_saga import partner_routing, saga_events
from tables.partner_saga import DEADLINES, sagas
from wire.internal import ForgetSaga, PartnerRouted, RoutingNote, SagaEnvelope
from wire.outgoing import Outgoing
from wire.routing import email_key

__all__ = ["DEFINITION", "DEFINITIONS", "StoreFailed", "handle", "run_sagas"]

log = logging.getLogger(__name__)
DEFINITION = definition_from(cfg)  # the flow of new sagas
DEFINITIONS = definitions_from(cfg)  # a saga keeps the flow it started with


class StoreFailed(RuntimeError):
    """The table refused a saga's new state: the worker stops (see the module docstring)."""


@dataclass
class _Plan:
    """What one saga event leads to, worked out before anything is written."""

    partition: int
    saga_id: str
    old_deadline: Deadline | None
    new: SagaState
    state: bytes | None  # the bytes to store (None: nothing)
    commands: tuple[Command, ...]
    outgoing: list[Outgoing]

    def write(self) -> None:
        """Store it. The index first: a crash between the two leaves an entry the timer
        drops, never a waiting saga without one."""
        if self.state is None:
            return
        DEADLINES.move(self.partition, self.saga_id, self.old_deadline, self.new.deadline)
        if self.new.terminal:
            DEADLINES.finished(self.partition, self.saga_id, self.new.updated_at)
        sagas[self.saga_id] = self.state


# Only this agent acknowledges these events, once their work is durable: a stream skipping
# one during a rebalance leaves it to be read again (runtime/faust_patches.py).
manual_ack(saga_events.get_topic_name())


@app.agent(saga_events, name="partner-saga")
async def run_sagas(stream: StreamT[bytes]) -> None:
    # Acknowledged below, once what they produced is durable. (An agent's stream is a
    # faust.Stream: StreamT does not declare noack().)
    events = cast("faust.Stream[bytes]", stream).noack()
    acks = InOrderAcks(partial(acknowledge, events), partition_of=lambda event: event.message.tp,
                       on_change=lambda n: METRICS.set("events_unacknowledged", n))
    async for event in events.events():
        try:
            await handle(event, acks.track(event))
        except StoreFailed as exc:
            # Not acknowledged: the partition's next owner replays it (Faust would restart
            # this agent alone, and its next commit would move past the event).
            log.critical("%s; stopping the worker", exc)
            await app.crash(exc)
            return


async def handle(event: EventT[bytes], done: Callable[[], Awaitable[None]]) -> None:
    """One saga event: plan (nothing written yet), store, hand the commands to Pulsar; `done`
    acknowledges it. Raises StoreFailed, without acknowledging, when the store fails."""
    try:
        plan = await _plan(event)
    except Exception as exc:  # a bug, or a stored state that no longer parses
        log.exception("saga event at %s offset %d failed", event.message.tp, event.message.offset)
        original, origin = event.value, saga_events.get_topic_name()
        with contextlib.suppress(ValueError):  # the participant's message as received, if any
            original, origin = _as_received(event, SagaEnvelope.model_validate_json(event.value))
        await dead_letter(original, f"cannot process: {exc!r}"[:1000], origin=origin, key=event.key)
        await done()
        return
    if plan is None:
        await done()
        return
    try:
        plan.write()
    except Exception as exc:
        raise StoreFailed(f"storing saga {plan.saga_id} (event at {event.message.tp} offset "
                          f"{event.message.offset}) failed: {exc!r}") from exc
    if plan.commands:
        await PORTS.outbound.send(plan.commands, plan.outgoing, done)
    else:
        await done()


def _as_received(event: EventT[bytes], envelope: SagaEnvelope) -> tuple[bytes, str]:
    """What a dead letter of this event carries: the participant's message as it came in,
    and where from; for the orchestrator's own events, the event and its topic."""
    if envelope.raw is not None:
        return envelope.raw.encode(), envelope.origin or saga_events.get_topic_name()
    return event.value, envelope.origin or saga_events.get_topic_name()


async def _to_partner_index(envelope: SagaEnvelope) -> None:
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
    await partner_routing.send(key=partner_id.encode(), value=msg.model_dump_json().encode())


async def _forget(event: EventT[bytes]) -> None:
    """Retention: each saga named leaves the live tables if it is still finished at the
    version the retention timer saw, and for retention (domain.lifecycle.retainable). Its
    state is replaced by its tombstone (ids, end status, no personal data), which answers a
    later start for its business key; its snapshot stays."""
    try:
        msg = ForgetSaga.model_validate_json(event.value)
    except ValidationError as exc:
        await dead_letter(event.value, f"invalid retention message: {exc.errors()[0]['msg']}",
                          origin=saga_events.get_topic_name(), key=event.key)
        return
    partition = event.message.partition
    now = time.time()
    for saga_id, version, _partner_id in msg.forget:
        raw = sagas.get(saga_id)
        if raw is None or Tombstone.is_one(raw):
            continue  # gone already
        state = SagaState.model_validate_json(raw)
        if not retainable(state) or state.version != version:
            continue  # changed since, or waits for a person: its new expiry entry decides
        DEADLINES.forget(partition, saga_id, state.updated_at)
        sagas[saga_id] = bury(state, now).model_dump_json().encode()
        METRICS.inc("sagas_expired_total")
        await _forget_email(state, now)


async def _forget_email(state: SagaState, now: float) -> None:
    """An Alpes saga's email claim (bridges/alpes.py) lives in the email's partition; it
    matched the partner to the saga while it was being created, and is personal data: it goes
    when the saga is retained or its data erased. (The partner index entry stays: a later
    PartnerCreated for the partner finds the saga, and is a duplicate of it.)"""
    if state.flow != "alpes-partner" or state.erased_at is not None:
        return
    forget_email = RoutingNote(note="forget-email", email=state.partner.email.strip().lower(),
                               saga_id=state.saga_id, at=now)
    await partner_routing.send(key=email_key(state.partner.email).encode(),
                               value=forget_email.model_dump_json().encode())


async def _at_tombstone(event: EventT[bytes], envelope: SagaEnvelope, raw: bytes) -> None:
    """An event for a retained saga (domain.lifecycle.on_tombstone): passed on to the
    business key's newer saga, opening that saga (a start after the dedupe horizon), or
    dead-lettered as a duplicate of the finished saga, with the reason."""
    tomb = Tombstone.model_validate_json(raw)
    ev = envelope.event
    verdict = on_tombstone(tomb, ev, time.time(), cfg.saga_dedupe_horizon_s, by_key=envelope.by_partner)
    METRICS.inc("events_at_tombstone_total", type=ev.type, verdict=verdict.kind)
    if verdict.kind == "duplicate":
        original, origin = _as_received(event, envelope)
        await dead_letter(original, verdict.reason, origin=origin, key=event.key, message_id=ev.event_id)
        return
    assert verdict.saga_id is not None
    if verdict.tombstone is not None:  # it opens the key's next saga: point the tombstone to it
        sagas[tomb.saga_id] = verdict.tombstone.model_dump_json().encode()
        log.info("saga %s: %s, saga %s", tomb.saga_id, verdict.reason, verdict.saga_id)
    moved = envelope.model_copy(update={
        "event": ev.model_copy(update={"saga_id": verdict.saga_id}),
        "generation": verdict.generation if verdict.generation is not None else envelope.generation,
    })
    await saga_events.send(key=verdict.saga_id.encode(), value=moved.model_dump_json().encode())


async def _plan(event: EventT[bytes]) -> _Plan | None:
    """Decide one saga event; return what to store and send, or None when the event was
    handled otherwise (dead-lettered, sent to the partner index, a retention message)."""
    if event.value.startswith(ForgetSaga.PREFIX):
        await _forget(event)
        return None
    topic = saga_events.get_topic_name()
    saga_id = event.key.decode() if event.key else ""
    try:
        envelope = SagaEnvelope.model_validate_json(event.value)
    except ValidationError as exc:
        await dead_letter(event.value, f"invalid saga event: {exc.errors()[0]['msg']}",
                          origin=topic, key=event.key)
        return None
    ev = envelope.event
    if ev.saga_id != saga_id:
        await dead_letter(event.value, f"key {saga_id!r} is not the event's saga {ev.saga_id!r}",
                          origin=topic, key=event.key)
        return None
    raw_state = sagas.get(saga_id)
    if raw_state is not None and Tombstone.is_one(raw_state):
        await _at_tombstone(event, envelope, raw_state)
        return None
    state = SagaState.model_validate_json(raw_state) if raw_state is not None else None
    now = time.time()
    defn = DEFINITION if state is None else DEFINITIONS.get(state.flow, DEFINITION)
    decision = decide(state, ev, now, defn, generation=envelope.generation or 1)
    METRICS.inc("events_total", type=ev.type, outcome=decision.outcome)
    if decision.outcome == "rejected" and envelope.by_partner and state is None:
        await _to_partner_index(envelope)
        return None
    if decision.outcome == "rejected":
        original, origin = _as_received(event, envelope)
        await dead_letter(original, f"no saga to match: {decision.reason}", origin=origin, key=event.key,
                          message_id=ev.event_id)
        return None
    new = decision.state
    assert new is not None
    if decision.changed:
        stored: bytes | None = new.model_dump_json().encode()
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
    plan = _Plan(event.message.partition, saga_id, old_deadline, new, stored, commands,
                 PORTS.outbound.encode(commands))
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
            await dead_letter(original, f"ignored by saga {saga_id}: {decision.reason}", origin=origin,
                              key=event.key, message_id=ev.event_id)
    if ev.type == "ErasureRequested" and decision.outcome == "applied" and state is not None:
        await _forget_email(state, now)
    for t in decision.transitions:
        if t.from_status != t.to_status:  # an erasure is in the history, but changes no status
            METRICS.inc("transitions_total", to=str(t.to_status))
    for cmd in decision.commands:
        METRICS.inc("commands_total", type=cmd.type)
    if envelope.received_at is not None and ev.type != "DeadlineReached":
        # From the bridge's receipt (or the HTTP request) to the decision.
        METRICS.observe_step(now - envelope.received_at)
    return plan
