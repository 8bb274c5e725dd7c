"""The saga agent's handling of a batch of events (agents/partner_saga.handle_batch), with the
table writer, the deadline index and the dead-letter topic replaced by fakes: nothing here
needs a broker. What it checks is the commit order (#10, defect 4; #23): whatever can fail on
an event's own account fails before anything of it is kept, so a dead-lettered event never
leaves a stored state whose commands were not queued; a batch's states and commands are one
write; and a batch the writer refuses is neither dead-lettered nor acknowledged, but stops
the worker, so that its events are replayed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import agents.partner_saga as agent
from agents import ports
from domain import Definitions, SagaState, ids, partner_creation
from domain.lifecycle import Tombstone
from domain.messages import AllianceCreated
from streams.partner_saga import outbox, saga_events
from tables.writer import Batch, WriteFailed
from tests.support.definitions import partner_creation_v2
from tests.support.flows import partner_created
from wire.cloudevents import decode_inbound
from wire.internal import ForgetSaga, OutboxEntry, SagaEnvelope
from wire.stored import SAGA_STATE

OUTBOX = outbox.get_topic_name()
EVENTS = saga_events.get_topic_name()


class Writer:
    """The table writer: the `sagas` table as a dict (saga id -> bytes), each commit's
    messages recorded; told to, it refuses a batch as Kafka or a full disk would."""

    def __init__(self) -> None:
        self.table: dict[str, bytes] = {}
        self.refuse = False
        self.commits: list[Batch] = []
        self.messages: list[tuple[str, bytes | None, bytes]] = []

    def batch(self) -> Batch:
        return Batch(lambda table, partition, key: self.table.get(key.decode()))

    async def commit(self, batch: Batch) -> None:
        if self.refuse:
            raise WriteFailed("the local store refused a batch: disk full")
        self.commits.append(batch)
        for (_table, _partition), changes in batch.changes.items():
            for key, value in changes.items():
                if value is None:
                    self.table.pop(key.decode(), None)
                else:
                    self.table[key.decode()] = value
        self.messages.extend((topic, key, value) for topic, _, key, value, _ in batch.messages)
        for effect in batch.effects:
            effect()

    def outbox(self) -> list[OutboxEntry]:
        return [OutboxEntry.model_validate_json(v) for t, _, v in self.messages if t == OUTBOX]

    def sent(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        return [(k, v) for t, k, v in self.messages if t == topic]


class Index:
    def __init__(self) -> None:
        self.moves: list[tuple[Any, ...]] = []

    def move(self, *args: Any) -> None:
        self.moves.append(args)

    def finished(self, *args: Any) -> None:
        self.moves.append(("finished", *args))

    def forget(self, *args: Any) -> None:
        self.moves.append(("forget", *args))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    w = SimpleNamespace(writer=Writer(), index=Index(), dead=[])
    w.table = w.writer.table

    def dead_letter_in(batch: Batch, payload: bytes, reason: str, **_: Any) -> None:
        w.dead.append(reason)
        batch.send("dead-letters", None, payload)

    monkeypatch.setattr(agent, "DEADLINES", w.index)
    monkeypatch.setattr(agent, "dead_letter_in", dead_letter_in)
    monkeypatch.setattr(agent, "DECODED", agent.DecodedStates(64))
    yield w


def _event(partner_id: str, offset: int = 7) -> SimpleNamespace:
    inbound = decode_inbound(partner_created(partner_id, 1))
    saga_id = ids.saga_id_for_partner(partner_id)
    value = SagaEnvelope(event=inbound.event(saga_id), raw=inbound.text, origin="test").model_dump_json()
    message = SimpleNamespace(tp="events-0", offset=offset, partition=0)
    return SimpleNamespace(key=saga_id.encode(), value=value.encode(), message=message)


async def _handle(w: SimpleNamespace, *events: SimpleNamespace) -> None:
    await agent.handle_batch(list(events), writer=w.writer)


async def test_an_event_is_stored_and_its_commands_written_to_the_outbox(world: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(world, event)
    saga_id = event.key.decode()
    assert saga_id in world.table and world.index.moves
    entry, = world.writer.outbox()
    assert [c.type for c in entry.commands] == ["SagaStarted", "CreateAlliance"]
    # In the saga's partition, keyed by saga: the outbox keeps each saga's order.
    (_, partition, key, _, _), = [m for m in world.writer.commits[0].messages if m[0] == OUTBOX]
    assert (partition, key) == (0, event.key)
    assert world.dead == []


async def test_a_batch_is_one_write_and_each_saga_sees_its_own_earlier_events(
        world: SimpleNamespace) -> None:
    partner_id = str(uuid.uuid4())
    first = _event(partner_id, offset=1)
    again = SimpleNamespace(key=first.key, value=first.value,  # redelivered in the same batch
                            message=SimpleNamespace(tp="events-0", offset=2, partition=0))
    other = _event(str(uuid.uuid4()), offset=3)
    await _handle(world, first, again, other)
    batch, = world.writer.commits  # one write for the three events
    assert set(batch.changes[(agent.SAGAS, 0)]) == {first.key, other.key}  # RocksDB: each saga's last
    # The changelog: every state written, in order (the snapshot mirror keeps each one's
    # transitions), the replay's the same bytes again.
    assert [k for k, _ in batch.log[(agent.SAGAS, 0)]] == [first.key, first.key, other.key]
    state = SagaState.model_validate_json(world.table[first.key.decode()])
    assert len(state.applied) == 1 and state.version == 1  # the repeat: a duplicate
    entries = world.writer.outbox()
    assert len(entries) == 3 and [c.command_id for c in entries[1].commands] == \
        [c.command_id for c in entries[0].commands] and all(c.repeat for c in entries[1].commands)


async def test_an_event_that_fails_is_dead_lettered_and_leaves_nothing_else(
        world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    bad, good = _event(str(uuid.uuid4()), offset=1), _event(str(uuid.uuid4()), offset=2)
    real = agent.decide

    def decide(state: Any, ev: Any, *args: Any, **kwargs: Any) -> Any:
        if ev.saga_id == bad.key.decode():
            raise ValueError("cannot decide")
        return real(state, ev, *args, **kwargs)

    monkeypatch.setattr(agent, "decide", decide)
    await _handle(world, bad, good)
    # Dead-lettered with the reason and nothing of it kept; the batch's other event stored.
    assert bad.key.decode() not in world.table and good.key.decode() in world.table
    assert len(world.dead) == 1 and "cannot decide" in world.dead[0]
    assert len(world.writer.outbox()) == 1


async def test_a_batch_the_writer_refuses_stops_the_worker(world: SimpleNamespace) -> None:
    world.writer.refuse = True
    event = _event(str(uuid.uuid4()))
    with pytest.raises(agent.StoreFailed, match="disk full"):
        await _handle(world, event)
    assert world.dead == [] and world.writer.messages == [] and world.table == {}


async def test_a_replayed_event_sends_the_same_commands_again(world: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(world, event)
    first = [c.command_id for c in world.writer.outbox()[0].commands]
    stored = dict(world.table)
    await _handle(world, event)  # redelivered after a crash before its acknowledgement
    assert [c.command_id for c in world.writer.outbox()[1].commands] == first
    assert world.table == stored  # the same bytes written again (the changelog made whole)
    assert world.writer.commits[1].changes[(agent.SAGAS, 0)] == {event.key: stored[event.key.decode()]}


# --- retention and repeated starts (issue #20, defects 1 and 2) ----------------------------
def _finish(w: SimpleNamespace, saga_id: str, status: str = "completed", updated_at: float = 1.0) -> None:
    """Store the saga as ended in `status`, long ago."""
    state = SagaState.model_validate_json(w.table[saga_id])
    w.table[saga_id] = state.model_copy(update={"status": status, "deadline": None,
                                                "updated_at": updated_at}).model_dump_json().encode()


def _forget_event(saga_id: str, version: int) -> SimpleNamespace:
    value = ForgetSaga(forget=((saga_id, version, None),)).model_dump_json().encode()
    return SimpleNamespace(key=saga_id.encode(), value=value,
                           message=SimpleNamespace(tp="events-0", offset=9, partition=0))


@pytest.fixture
def retained(world: SimpleNamespace) -> SimpleNamespace:
    return world


async def test_retention_keeps_a_saga_waiting_for_an_operator(retained: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(retained, event)
    saga_id = event.key.decode()
    _finish(retained, saga_id, "compensation_failed")
    version = SagaState.model_validate_json(retained.table[saga_id]).version
    await _handle(retained, _forget_event(saga_id, version))
    # Before: deleted, and an operator's retry then answered 202 and did nothing.
    assert SagaState.model_validate_json(retained.table[saga_id]).status == "compensation_failed"


async def test_a_retained_saga_leaves_a_tombstone_without_personal_data(retained: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(retained, event)
    saga_id = event.key.decode()
    _finish(retained, saga_id)
    version = SagaState.model_validate_json(retained.table[saga_id]).version
    await _handle(retained, _forget_event(saga_id, version))
    tomb = Tombstone.model_validate_json(retained.table[saga_id])
    assert (tomb.status, tomb.version, tomb.generation) == ("completed", version + 1, 1)
    assert b"example.com" not in retained.table[saga_id] and b"Calle" not in retained.table[saga_id]


async def test_a_repeated_partner_created_after_retention_is_a_duplicate_not_a_new_saga(
        retained: SimpleNamespace) -> None:
    partner_id = str(uuid.uuid4())
    await _handle(retained, _event(partner_id))
    saga_id = ids.saga_id_for_partner(partner_id)
    _finish(retained, saga_id, updated_at=time.time() - 10)
    version = SagaState.model_validate_json(retained.table[saga_id]).version
    await _handle(retained, _forget_event(saga_id, version))
    queued = len(retained.writer.outbox())
    again = _event(partner_id)  # a new event id for the same partner
    await _handle(retained, again)
    # Before: the saga was deleted, so this opened it again under the same id, with the same
    # command ids: a second CreateAlliance, and two starts in one history.
    assert len(retained.writer.outbox()) == queued
    assert Tombstone.is_one(retained.table[saga_id])
    assert len(retained.dead) == 1 and "duplicate of a finished saga" in retained.dead[0]
    assert retained.writer.sent(EVENTS) == []


async def test_a_start_after_the_dedupe_horizon_opens_the_next_generation(
        retained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "cfg", agent.cfg.model_copy(update={"saga_dedupe_horizon_s": 100.0}))
    partner_id = str(uuid.uuid4())
    await _handle(retained, _event(partner_id))
    saga_id = ids.saga_id_for_partner(partner_id)
    _finish(retained, saga_id, updated_at=time.time() - 1000)
    version = SagaState.model_validate_json(retained.table[saga_id]).version
    await _handle(retained, _forget_event(saga_id, version))
    await _handle(retained, _event(partner_id))
    (key, value), = retained.writer.sent(EVENTS)  # passed on to the key's next saga
    env = SagaEnvelope.model_validate_json(value)
    new_id = ids.saga_id_generation(saga_id, 2)
    assert key == new_id.encode() and env.event.saga_id == new_id and env.generation == 2
    assert Tombstone.model_validate_json(retained.table[saga_id]).current == new_id
    # There it opens a saga of its own: its own id, generation and command ids.
    moved = SimpleNamespace(key=key, value=value,
                            message=SimpleNamespace(tp="events-0", offset=11, partition=0))
    await _handle(retained, moved)
    state = SagaState.model_validate_json(retained.table[new_id])
    assert state.generation == 2 and state.saga_id == new_id
    entries = retained.writer.outbox()
    first_ids = {c.command_id for c in entries[0].commands}
    assert first_ids.isdisjoint(c.command_id for c in entries[-1].commands)


def test_an_adapter_not_bound_is_a_line_saying_so() -> None:
    with ports.bound():
        ports.PORTS._bound.clear()
        with pytest.raises(RuntimeError, match="no partners port bound: the worker binds"):
            ports.PORTS.partners.lookup("p")
    with pytest.raises(TypeError, match="no port 'pulsar'"):
        ports.bind(pulsar=object())


def _alliance_created(saga_id: str, partner_id: str, offset: int) -> SimpleNamespace:
    ev = AllianceCreated(event_id=f"alliance-{saga_id}", saga_id=saga_id, partner_id=partner_id,
                         alliance_id=f"a-{partner_id}")
    value = SagaEnvelope(event=ev, origin="test").model_dump_json()
    return SimpleNamespace(key=saga_id.encode(), value=value.encode(),
                           message=SimpleNamespace(tp="events-0", offset=offset, partition=0))


async def test_a_new_definition_version_takes_new_sagas_while_old_ones_finish_under_theirs(
        world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    old_partner, new_partner = str(uuid.uuid4()), str(uuid.uuid4())
    old = _event(old_partner, offset=1)
    await _handle(world, old)
    assert SAGA_STATE.load(world.table[old.key.decode()]).flow_version == 1
    # Deploy: version 2 beside version 1 (a step added, a timeout changed).
    deployed = Definitions([partner_creation(), partner_creation_v2()])
    monkeypatch.setattr(agent, "DEFINITIONS", deployed)
    monkeypatch.setattr(agent, "DEFINITION", deployed.newest("partner-creation"))
    new = _event(new_partner, offset=2)
    await _handle(world, new, _alliance_created(old.key.decode(), old_partner, 3))
    await _handle(world, _alliance_created(new.key.decode(), new_partner, 4))
    old_state, new_state = (SAGA_STATE.load(world.table[e.key.decode()]) for e in (old, new))
    assert (old_state.flow_version, old_state.status) == (1, "completed")
    assert (new_state.flow_version, new_state.status) == (2, "awaiting_compliance")
    # Version 1 removed while a saga of it still runs: its event is dead-lettered, with why;
    # nothing of it is stored.
    left = _event(str(uuid.uuid4()), offset=5)
    monkeypatch.setattr(agent, "DEFINITIONS", Definitions([partner_creation()]))
    monkeypatch.setattr(agent, "DEFINITION", partner_creation())
    await _handle(world, left)
    monkeypatch.setattr(agent, "DEFINITIONS", Definitions([partner_creation_v2()]))
    before = world.table[left.key.decode()]
    await _handle(world, _alliance_created(left.key.decode(), "p", 6))
    assert world.table[left.key.decode()] == before
    assert "partner-creation version 1 is not deployed" in world.dead[-1]
