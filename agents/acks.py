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
                 partition_of: Callable[[Any], Hashable],
                 on_change: Callable[[int], object] | None = None) -> None:
        self._ack = ack
        self._partition_of = partition_of
        self._on_change = on_change  # called with `waiting` whenever it changes
        self._queues: dict[Hashable, deque[list[Any]]] = {}
        self._waiting = 0

    def track(self, event: Any) -> Callable[[], Awaitable[None]]:
        """Register `event` (in the order events are read); returns its `done` callback."""
        entry = [event, False]
        queue = self._queues.setdefault(self._partition_of(event), deque())
        queue.append(entry)
        self._changed(1)

        async def done() -> None:
            entry[1] = True
            while queue and queue[0][1]:
                await self._ack(queue.popleft()[0])
                self._changed(-1)

        return done

    def _changed(self, by: int) -> None:
        self._waiting += by
        if self._on_change is not None:
            self._on_change(self._waiting)

    @property
    def waiting(self) -> int:
        """Events read and not acknowledged yet."""
        return self._waiting
