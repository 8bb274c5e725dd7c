"""The saga agent's handling of one event (agents/partner_saga.handle), with the table, the
deadline index, the dead-letter topic and the acknowledgement replaced by fakes: nothing here
needs a broker. What it checks is the commit order (#10, defect 4): whatever can fail on the
event's own account fails before the saga's new state is written, so a dead-lettered event
never leaves a stored state whose commands were not sent; and a failing write is not
dead-lettered and acknowledged, but stops the worker, so that the event is replayed."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

import agents.partner_saga as agent
import bridges.pulsar_outbound as outbound
from domain import ids
from tests.support.flows import partner_created
from wire.cloudevents import decode_inbound
from wire.internal import SagaEnvelope


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
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    w = SimpleNamespace(table=Table(), index=Index(), dead=[], acked=[],
                        outbound=outbound.Outbound(100))

    async def dead_letter(payload: bytes, reason: str, **_: Any) -> None:
        w.dead.append(reason)

    monkeypatch.setattr(agent, "sagas", w.table)
    monkeypatch.setattr(agent, "DEADLINES", w.index)
    monkeypatch.setattr(agent, "dead_letter", dead_letter)
    monkeypatch.setattr(agent, "OUTBOUND", w.outbound)
    return w


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
