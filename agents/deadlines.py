"""The deadline timer: on every worker, turn due deadlines of the partitions it actively
owns into DeadlineReached events in the saga's own stream.

It skips ticks while the worker rebalances or recovers tables. An index entry is checked
against the saga's stored state before it fires, and leaves the index if the saga has moved
past it. A deadline fired by a worker that then died is fired again by the partition's next
owner: the event id is derived from the deadline, so the saga applies it once, and ignores
it if it has moved on.
"""

from __future__ import annotations

import logging
import time

from domain import ids
from domain.messages import DeadlineReached
from runtime.app import app, cfg
from runtime.metrics import METRICS
from streams.partner_saga import saga_events
from tables.partner_saga import DEADLINES, sagas
from wire.internal import SagaEnvelope

__all__ = ["active_partitions", "fire_due", "fire_due_deadlines"]

log = logging.getLogger(__name__)

# index key -> when this worker fired it. The entry leaves the index when the saga agent
# applies the event; until then a re-fire waits REFIRE_AFTER_S (the first send may be
# still queued behind a busy stream).
_fired: dict[bytes, float] = {}
REFIRE_AFTER_S = 30.0
# At most this many deadlines fired per tick, so that a backlog (a restart after a long
# outage) is worked off over a few ticks instead of blocking the event loop in one.
MAX_PER_TICK = 2000


async def fire_due(now: float) -> int:
    fired = 0
    latest = 0.0  # the most overdue deadline fired this tick
    still_due: set[bytes] = set()
    recent = {k for k, t in _fired.items() if now - t < REFIRE_AFTER_S}
    capped = False
    for partition, key, f in DEADLINES.due(active_partitions(), now, skip=recent):
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
        await saga_events.send(key=f["saga_id"].encode(), value=envelope.model_dump_json().encode())
        _fired[key] = now
        fired += 1
        latest = max(latest, now - f["due_at"])
    if not capped:  # forget deadlines the sagas have applied (they left the index)
        for key in [k for k in _fired if k not in still_due]:
            del _fired[key]
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
