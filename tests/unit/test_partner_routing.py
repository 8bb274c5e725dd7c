"""The partner-routing agent's loop (agents/partner_routing.route_partner_events) with a fake
stream: an event whose handling raises is dead-lettered with the reason and acknowledged
after that, and the agent goes on; a write Kafka refuses stops the worker without
acknowledging (issue #20, defect 5: Faust's automatic acknowledgement used to take such an
event as done, and a PartnerCreated lost that way never opened its saga)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

import agents.partner_routing as routing


class FakeStream:
    def __init__(self, events: list[SimpleNamespace]) -> None:
        self._events = events
        self.acked: list[SimpleNamespace] = []
        self.log: list[str] = []

    def noack(self) -> FakeStream:
        return self

    async def events(self) -> AsyncIterator[SimpleNamespace]:
        for e in self._events:
            yield e

    async def ack(self, event: SimpleNamespace) -> bool:
        self.acked.append(event)
        self.log.append(f"ack {event.value.decode()}")
        return True


def _event(n: int) -> SimpleNamespace:
    return SimpleNamespace(key=b"p", value=f"event-{n}".encode(),
                           message=SimpleNamespace(tp="routing-0", offset=n, partition=0))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    w = SimpleNamespace(dead=[], crashed=[], routed=[])

    async def dead_letter(payload: bytes, reason: str, **_: Any) -> None:
        w.dead.append((payload, reason))
        w.stream.log.append(f"dead {payload.decode()}")

    async def crash(exc: BaseException) -> None:
        w.crashed.append(exc)

    monkeypatch.setattr(routing, "dead_letter", dead_letter)
    monkeypatch.setattr(routing.app, "crash", crash)
    return w


async def test_an_event_whose_handling_raises_is_dead_lettered_then_acknowledged(
        world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    async def route(event: SimpleNamespace) -> None:
        if event.message.offset == 1:
            raise LookupError("the index said something odd")
        world.routed.append(event)

    monkeypatch.setattr(routing, "_route", route)
    world.stream = FakeStream([_event(0), _event(1), _event(2)])
    await routing.route_partner_events.fun(world.stream)
    assert [e.message.offset for e in world.routed] == [0, 2]  # the agent went on
    (payload, reason), = world.dead
    assert payload == b"event-1" and "LookupError" in reason and "odd" in reason
    # Acknowledged only once its dead letter was handed to Kafka, and in order.
    assert world.stream.log == ["ack event-0", "dead event-1", "ack event-1", "ack event-2"]


async def test_a_write_kafka_refuses_stops_the_worker_unacknowledged(
        world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    async def route(event: SimpleNamespace) -> None:
        if event.message.offset == 1:
            raise KafkaTimeoutError()
        world.routed.append(event)

    monkeypatch.setattr(routing, "_route", route)
    world.stream = FakeStream([_event(0), _event(1), _event(2)])
    await routing.route_partner_events.fun(world.stream)
    assert [e.message.offset for e in world.stream.acked] == [0]
    assert len(world.crashed) == 1 and world.dead == []
