"""The partner-routing agent's loop (agents/partner_routing.route_partner_events) with a fake
stream and table writer: a batch's events are acknowledged only once the batch is durable; an
event whose handling raises is dead-lettered with the reason in its batch, and the agent goes
on; a batch Kafka refuses stops the worker without acknowledging (issue #20, defect 5:
Faust's automatic acknowledgement used to take such an event as done, and a PartnerCreated
lost that way never opened its saga)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

import agents.partner_routing as routing
from tables.writer import Batch, WriteFailed


class FakeStream:
    def __init__(self, events: list[SimpleNamespace], log: list[str]) -> None:
        self._events = events
        self.acked: list[SimpleNamespace] = []
        self.log = log

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[SimpleNamespace]]:
        yield list(self._events)

    async def ack(self, event: SimpleNamespace) -> bool:
        self.acked.append(event)
        self.log.append(f"ack {event.value.decode()}")
        return True


class Writer:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.refuse = False
        self.messages: list[tuple[str, bytes]] = []

    def batch(self) -> Batch:
        return Batch(lambda table, partition, key: None)

    async def commit(self, batch: Batch) -> None:
        if self.refuse:
            raise WriteFailed("Kafka refused a batch of 3 writes: KafkaTimeoutError")
        self.messages.extend((topic, value) for topic, _, _, value, _ in batch.messages)
        self.log.append(f"commit {len(batch.messages)} messages")


def _event(n: int) -> SimpleNamespace:
    return SimpleNamespace(key=b"p", value=f"event-{n}".encode(),
                           message=SimpleNamespace(tp="routing-0", offset=n, partition=0))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    w = SimpleNamespace(dead=[], crashed=[], routed=[], log=[])
    w.writer = Writer(w.log)

    def dead_letter_in(batch: Batch, payload: bytes, reason: str, **_: Any) -> None:
        w.dead.append((payload, reason))
        batch.send("dead-letters", None, payload)

    async def crash(exc: BaseException) -> None:
        w.crashed.append(exc)

    def route(event: SimpleNamespace, batch: Batch) -> None:
        batch.send("events", None, b"routed " + event.value)  # written before it fails: dropped
        if event.message.offset == 1:
            raise LookupError("the index said something odd")
        w.routed.append(event)

    monkeypatch.setattr(routing, "dead_letter_in", dead_letter_in)
    monkeypatch.setattr(routing, "WRITER", w.writer)
    monkeypatch.setattr(routing, "_route", route)
    monkeypatch.setattr(routing.app, "crash", crash)
    w.stream = FakeStream([_event(0), _event(1), _event(2)], w.log)
    return w


async def test_an_event_whose_handling_raises_is_dead_lettered_and_the_batch_acknowledged_once_durable(
        world: SimpleNamespace) -> None:
    await routing.route_partner_events.fun(world.stream)
    assert [e.message.offset for e in world.routed] == [0, 2]  # the agent went on
    (payload, reason), = world.dead
    assert payload == b"event-1" and "LookupError" in reason and "odd" in reason
    # The failed event's own writes are dropped, its dead letter kept, in the batch's order.
    assert world.writer.messages == [("events", b"routed event-0"), ("dead-letters", b"event-1"),
                                     ("events", b"routed event-2")]
    # Acknowledged only once the batch (its dead letter included) is durable, and in order.
    assert world.log == ["commit 3 messages", "ack event-0", "ack event-1", "ack event-2"]


async def test_a_batch_kafka_refuses_stops_the_worker_unacknowledged(world: SimpleNamespace) -> None:
    world.writer.refuse = True
    await routing.route_partner_events.fun(world.stream)
    assert world.stream.acked == []
    assert len(world.crashed) == 1 and "KafkaTimeoutError" in str(world.crashed[0])
