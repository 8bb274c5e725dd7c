"""Acknowledging a stream's events in offset order, each once its work is durable.

The saga agent acknowledges an event only when Pulsar acknowledged its commands, so events
finish out of order. Faust must not see that: its commit (faust/transport/consumer.py,
`Consumer._new_offset`) moves past a single unacknowledged event at the head of a partition
when the ones behind it are acknowledged (and checks nothing before the partition's first
commit), so a crash then would lose that event. Here each partition's events are
acknowledged strictly in the order they were read: an event that is done waits for the ones
before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

__all__ = ["InOrderAcks"]


class InOrderAcks:
    def __init__(self, ack: Callable[[Any], Awaitable[object]],
                 partition_of: Callable[[Any], Hashable]) -> None:
        self._ack = ack
        self._partition_of = partition_of
        self._queues: dict[Hashable, deque[list[Any]]] = {}

    def track(self, event: Any) -> Callable[[], Awaitable[None]]:
        """Register `event` (in the order events are read); returns its `done` callback."""
        entry = [event, False]
        queue = self._queues.setdefault(self._partition_of(event), deque())
        queue.append(entry)

        async def done() -> None:
            entry[1] = True
            while queue and queue[0][1]:
                await self._ack(queue.popleft()[0])

        return done

    @property
    def waiting(self) -> int:
        """Events read and not acknowledged yet."""
        return sum(len(q) for q in self._queues.values())
