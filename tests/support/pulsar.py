"""Pulsar from the tests' side: publishing participant events and tapping topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulsar
import pulsar.asyncio as apulsar

__all__ = ["Tap", "TappedMessage", "connect"]


def connect(url: str) -> apulsar.Client:
    return apulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


@dataclass(frozen=True)
class TappedMessage:
    data: bytes
    properties: dict[str, str]
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


#: A tap acknowledges cumulatively, every this many messages.
ACK_EVERY = 100


@dataclass
class Tap:
    """Every message of a topic, on a subscription of its own (from the earliest message)."""

    client: apulsar.Client
    topic: str
    messages: list[TappedMessage] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _consumer: apulsar.Consumer | None = None

    async def start(self) -> Tap:
        self._consumer = await self.client.subscribe(
            self.topic, f"tap-{uuid.uuid4().hex[:8]}", consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest)
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        received = 0
        while True:
            try:  # Pulsar may be down for a while (the fault harness stops it)
                msg = await self._consumer.receive()
            except (pulsar.PulsarException, apulsar.PulsarException):
                await asyncio.sleep(0.5)
                continue
            self.messages.append(TappedMessage(msg.data(), dict(msg.properties()), time.time()))
            received += 1
            # Acknowledged up to here every ACK_EVERY messages, not one round trip each: a tap
            # awaiting each ack read ~170 messages/s and fell behind a soak's notices. What is
            # not acknowledged yet comes again after a reconnect: copies (same CloudEvents id),
            # which readers dedupe.
            if received % ACK_EVERY == 0:
                try:
                    await self._consumer.acknowledge_cumulative(msg)
                except (pulsar.PulsarException, apulsar.PulsarException):
                    pass

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.messages]

    async def wait_for(self, done: Callable[[Tap], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on {self.topic} "
                                     f"({len(self.messages)} messages seen)")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
