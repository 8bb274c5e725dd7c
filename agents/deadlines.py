"""The deadline timer: on every worker, turn due deadlines of the partitions it actively
owns into DeadlineReached events in the saga's own stream.

It skips ticks while the worker rebalances or recovers tables. An index entry is checked
against the saga's stored state before it fires, and leaves the index if the saga has moved
past it. A deadline fired by a worker that then died is fired again by the partition's next
owner: the event id is derived from the deadline, so the saga applies it once, and ignores
it if it has moved on.

A deadline still in the index after it fired is fired again only once its first event can no
longer be on its way (`Refires`): its send failed, or the saga agent has committed past that
event's offset and REFIRE_AFTER_S went by. Never while the event waits in a backlog: a fixed
re-fire interval shorter than the backlog multiplied the backlog (the first soak, at 215
sagas/s, fired 150,000 deadlines a minute after a Kafka restart, and never caught up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain import ids
from domain.messages import DeadlineReached
from runtime.app import app, cfg
from runtime.faust_patches import committed_offset
from runtime.metrics import METRICS
from streams.partner_saga import saga_events
from tables.partner_saga import DEADLINES, sagas
from wire.internal import SagaEnvelope

__all__ = ["Refires", "active_partitions", "fire_due", "fire_due_deadlines"]

log = logging.getLogger(__name__)

REFIRE_AFTER_S = 30.0


@dataclass
class _Fired:
    entry: bytes  # the index entry's value: the deadline fired (a later one of the saga's in
    # the same window has the same key, and another value: it is not held back)
    at: float
    sent: asyncio.Future[Any]  # the produce: RecordMetadata (partition, offset) once in Kafka


class Refires:
    """The deadlines this worker fired and whose entries are still in the index (the saga
    agent removes an entry when it applies the event). One may fire again only when its event
    is no longer on its way: its send failed, or the agent committed past its offset
    (`committed(partition)`: the events topic's committed offset, the next to read) and
    `after_s` went by since it fired. While the event waits in a backlog it is not fired again."""

    def __init__(self, committed: Callable[[int], int | None], after_s: float = REFIRE_AFTER_S) -> None:
        self._committed = committed
        self.after_s = after_s
        self._fired: dict[bytes, _Fired] = {}

    def __len__(self) -> int:
        return len(self._fired)

    def fired(self, key: bytes, entry: bytes, now: float, sent: asyncio.Future[Any]) -> None:
        self._fired[key] = _Fired(entry, now, sent)

    def waiting(self, now: float) -> dict[bytes, bytes]:
        """The entries not to fire now: index key -> the value fired."""
        return {key: f.entry for key, f in self._fired.items() if not self._may_refire(f, now)}

    def _may_refire(self, f: _Fired, now: float) -> bool:
        if not f.sent.done():
            return False  # still in the producer's queue
        if f.sent.cancelled() or f.sent.exception() is not None:
            return True  # never reached Kafka
        if now - f.at < self.after_s:
            return False
        meta = f.sent.result()
        committed = self._committed(meta.partition)
        return committed is not None and committed > meta.offset

    def forget_except(self, keys: set[bytes]) -> None:
        """Keep only `keys` (the entries still due): the others left the index."""
        for key in [k for k in self._fired if k not in keys]:
            del self._fired[key]


def _events_committed(partition: int) -> int | None:
    return committed_offset(app, saga_events.get_topic_name(), partition)


REFIRES = Refires(_events_committed)
# At most this many deadlines fired per tick, so that a backlog (a restart after a long
# outage) is worked off over a few ticks instead of blocking the event loop in one.
MAX_PER_TICK = 2000


async def fire_due(now: float) -> int:
    fired = 0
    latest = 0.0  # the most overdue deadline fired this tick
    still_due: set[bytes] = set()
    waiting = REFIRES.waiting(now)
    capped = False
    for partition, key, f in DEADLINES.due(active_partitions(), now, skip=waiting):
        if fired >= MAX_PER_TICK:
            capped = True  # the rest waits for the next tick
            break
        if f is None:
            still_due.add(key)
            continue
        if not DEADLINES.check(partition, key, f):
            METRICS.inc("stale_deadlines_dropped_total")
            continue
        still_due.add(key)
        ev = DeadlineReached(
            event_id=ids.deadline_event_id(f["saga_id"], f["step"], f["phase"], f["kind"],
                                           f["attempt"], f["due_at"]),
            saga_id=f["saga_id"], step=f["step"], phase=f["phase"], kind=f["kind"],
            attempt=f["attempt"], due_at=f["due_at"],
        )
        envelope = SagaEnvelope(event=ev, received_at=f["due_at"])
        sent = await saga_events.send(key=f["saga_id"].encode(), value=envelope.model_dump_json().encode())
        REFIRES.fired(key, DEADLINES.entry(partition, key) or b"", now, asyncio.ensure_future(sent))
        fired += 1
        latest = max(latest, now - f["due_at"])
    if not capped:  # forget deadlines the sagas have applied (they left the index)
        REFIRES.forget_except(still_due)
    if fired:
        METRICS.inc("timeouts_fired_total", fired)
        METRICS.set("timeout_fire_lateness_seconds", round(latest, 3))
        (log.warning if latest > 1.0 else log.debug)(
            "deadlines: fired %d, the most overdue %.3fs after its due time", fired, latest)
    return fired


def active_partitions() -> list[int]:
    """The partitions of the `sagas` table this worker actively owns (not its standbys)."""
    topic = sagas.changelog_topic_name
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


@app.timer(interval=cfg.deadline_tick_s, name="deadline-timer")
async def fire_due_deadlines() -> None:
    if app.rebalancing or app.in_recovery:
        return
    await fire_due(time.time())
