"""The saga agent's handling of one event (agents/partner_saga.handle), with the table, the
deadline index, the dead-letter topic and the acknowledgement replaced by fakes: nothing here
needs a broker. What it checks is the commit order (#10, defect 4): whatever can fail on the
event's own account fails before the saga's new state is written, so a dead-lettered event
never leaves a stored state whose commands were not sent; and a failing write is not
dead-lettered and acknowledged, but stops the worker, so that the event is replayed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import agents.partner_saga as agent
import bridges.pulsar_outbound as outbound
from agents import ports
from domain import SagaState, ids
from domain.lifecycle import Tombstone
from tests.support.flows import partner_created
from wire.cloudevents import decode_inbound
from wire.internal import ForgetSaga, SagaEnvelope


class Table(dict):  # type: ignore[type-arg]
    """The `sagas` table: a dict that can be told to refuse writes."""

    refuse = False

    def __setitem__(self, key: str, value: bytes) -> None:
        if self.refuse:
            raise OSError("disk full")
        super().__setitem__(key, value)


class Index:
    def __init__(self) -> None:
        self.moves: list[tuple[Any, ...]] = []

    def move(self, *args: Any) -> None:
        self.moves.append(args)

    def finished(self, *args: Any) -> None:
        self.moves.append(("finished", *args))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    w = SimpleNamespace(table=Table(), index=Index(), dead=[], acked=[],
                        outbound=outbound.Outbound(100))

    async def dead_letter(payload: bytes, reason: str, **_: Any) -> None:
        w.dead.append(reason)

    monkeypatch.setattr(agent, "sagas", w.table)
    monkeypatch.setattr(agent, "DEADLINES", w.index)
    monkeypatch.setattr(agent, "dead_letter", dead_letter)
    with ports.bound(outbound=w.outbound):  # the adapter, handed over as the worker does
        yield w


def _event(partner_id: str) -> SimpleNamespace:
    inbound = decode_inbound(partner_created(partner_id, 1))
    saga_id = ids.saga_id_for_partner(partner_id)
    value = SagaEnvelope(event=inbound.event(saga_id), raw=inbound.text, origin="test").model_dump_json()
    message = SimpleNamespace(tp="events-0", offset=7, partition=0)
    return SimpleNamespace(key=saga_id.encode(), value=value.encode(), message=message)


async def _handle(w: SimpleNamespace, event: SimpleNamespace) -> None:
    async def done() -> None:
        w.acked.append(event)

    await agent.handle(event, done)


async def test_an_event_is_stored_and_its_commands_handed_over(world: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(world, event)
    saga_id = event.key.decode()
    assert saga_id in world.table and world.index.moves
    (items, commands, _), = world.outbound._queue
    assert [c.type for c in commands] == ["SagaStarted", "CreateAlliance"]
    assert [props["type"] for _, _, props, _ in items] == ["SagaStarted", "CreateAlliance"]
    assert world.acked == [] and world.dead == []  # acknowledged once Pulsar has them


async def test_commands_that_cannot_be_encoded_leave_nothing_stored(
        world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(command: Any) -> bytes:
        raise ValueError("cannot encode")

    monkeypatch.setattr(outbound, "encode_command", refuse)
    event = _event(str(uuid.uuid4()))
    await _handle(world, event)
    # Dead-lettered with the reason and acknowledged, and nothing of it stored: before the
    # fix the saga's new state was written, then its commands failed and were lost, and a
    # finished or waiting saga had nothing left to send them again.
    assert world.table == {} and world.index.moves == []
    assert len(world.dead) == 1 and "cannot encode" in world.dead[0]
    assert world.acked == [event] and world.outbound._queue == []


async def test_a_write_that_fails_is_neither_dead_lettered_nor_acknowledged(
        world: SimpleNamespace) -> None:
    world.table.refuse = True
    event = _event(str(uuid.uuid4()))
    with pytest.raises(agent.StoreFailed, match="disk full"):
        await _handle(world, event)
    assert world.dead == [] and world.acked == [] and world.outbound._queue == []


async def test_a_replayed_event_sends_the_same_commands_again(world: SimpleNamespace) -> None:
    event = _event(str(uuid.uuid4()))
    await _handle(world, event)
    first = [c.command_id for c in world.outbound._queue[0][1]]
    stored = dict(world.table)
    await _handle(world, event)  # redelivered after a crash before its acknowledgement
    assert [c.command_id for c in world.outbound._queue[1][1]] == first
    assert world.table == stored  # the same bytes written again (the changelog made whole)


# --- retention and repeated starts (issue #20, defects 1 and 2) ----------------------------
class Sent:
    """A topic's send: records (key, value)."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send(self, *, key: bytes, value: bytes, **_: Any) -> None:
        self.records.append((key, value))


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
def retained(world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    world.index.forget = lambda *args: world.index.moves.append(("forget", *args))
    world.events = Sent()
    world.routing = Sent()
    monkeypatch.setattr(agent, "saga_events", SimpleNamespace(send=world.events.send,
                                                              get_topic_name=lambda: "events"))
    monkeypatch.setattr(agent, "partner_routing", world.routing)
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
    queued = len(retained.outbound._queue)
    again = _event(partner_id)  # a new event id for the same partner
    await _handle(retained, again)
    # Before: the saga was deleted, so this opened it again under the same id, with the same
    # command ids: a second CreateAlliance, and two starts in one history.
    assert len(retained.outbound._queue) == queued
    assert Tombstone.is_one(retained.table[saga_id])
    assert len(retained.dead) == 1 and "duplicate of a finished saga" in retained.dead[0]
    assert retained.acked[-1] is again and retained.events.records == []


async def test_a_start_after_the_dedupe_horizon_opens_the_next_generation(
        retained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "cfg", SimpleNamespace(saga_dedupe_horizon_s=100.0))
    partner_id = str(uuid.uuid4())
    await _handle(retained, _event(partner_id))
    saga_id = ids.saga_id_for_partner(partner_id)
    _finish(retained, saga_id, updated_at=time.time() - 1000)
    version = SagaState.model_validate_json(retained.table[saga_id]).version
    await _handle(retained, _forget_event(saga_id, version))
    await _handle(retained, _event(partner_id))
    (key, value), = retained.events.records  # passed on to the key's next saga
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
    first_ids = {c.command_id for _, cmds, _ in retained.outbound._queue[:1] for c in cmds}
    assert first_ids.isdisjoint(c.command_id for c in retained.outbound._queue[-1][1])


def test_an_adapter_not_bound_is_a_line_saying_so() -> None:
    with ports.bound():
        ports.PORTS._bound.clear()
        with pytest.raises(RuntimeError, match="no outbound port bound: the worker binds"):
            ports.PORTS.outbound.encode([])
    with pytest.raises(TypeError, match="no port 'pulsar'"):
        ports.bind(pulsar=object())
