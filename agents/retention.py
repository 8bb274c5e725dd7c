"""Retention: finished sagas leave the live tables SAGA_RETENTION_S after their last update,
so that the tables (RocksDB, changelogs, recovery time) hold what is live and recent, not
every saga ever run.

On every worker, for the partitions it actively owns: the expired ones are read from the
index (tables/deadline_index.py), their snapshots are checked in PostgreSQL in one query
(a saga whose final state is not there yet waits: the snapshot is what answers for it
afterwards), and they are sent to their partition of the saga stream, a ForgetSaga of up to
FORGET_BATCH sagas at a time. The saga agent removes each only if it is still finished at
the version seen here. PostgreSQL down: nothing expires until it is back.
"""

from __future__ import annotations

import logging
import time

from agents.deadlines import active_partitions
from agents.ports import PORTS
from runtime.app import app, cfg
from runtime.errors import StoreUnavailable
from runtime.metrics import METRICS
from streams.partner_saga import saga_events
from tables.partner_saga import DEADLINES
from wire.internal import ForgetSaga

__all__ = ["expire_due", "expire_sagas"]

log = logging.getLogger(__name__)

#: At most this many sagas leave per tick and worker (a backlog drains over a few ticks).
MAX_PER_TICK = 5000
#: Sagas per ForgetSaga message.
FORGET_BATCH = 500
# saga id -> when this worker sent its ForgetSaga: not sent again for a while.
_sent: dict[str, float] = {}
RESEND_AFTER_S = 60.0


async def expire_due(now: float) -> int:
    for saga_id in [s for s, t in _sent.items() if now - t > RESEND_AFTER_S]:
        del _sent[saga_id]
    due = [d for d in DEADLINES.expired(active_partitions(), now, MAX_PER_TICK) if d[1] not in _sent]
    if not due:
        return 0
    try:
        snapshotted = await PORTS.snapshots.versions([d[1] for d in due])
    except StoreUnavailable as exc:
        log.warning("retention: %s; finished sagas stay until PostgreSQL answers", exc)
        return 0
    by_partition: dict[int, list[tuple[str, int, str | None]]] = {}
    for partition, saga_id, version, partner_id in due:
        if snapshotted.get(saga_id, -1) < version:
            continue  # its final state is not in PostgreSQL yet
        by_partition.setdefault(partition, []).append((saga_id, version, partner_id))
    sent = 0
    for partition, entries in by_partition.items():
        for i in range(0, len(entries), FORGET_BATCH):
            batch = entries[i:i + FORGET_BATCH]
            msg = ForgetSaga(forget=tuple(batch))
            # The partition of these sagas (the deletes go to the current event's partition).
            await saga_events.send(key=batch[0][0].encode(), value=msg.model_dump_json().encode(),
                                   partition=partition)
            for saga_id, _, _ in batch:
                _sent[saga_id] = now
            sent += len(batch)
    if sent:
        METRICS.inc("retention_forget_sent_total", sent)
        log.info("retention: %d finished sagas leave the live tables", sent)
    return sent


@app.timer(interval=cfg.retention_tick_s, name="retention-timer")
async def expire_sagas() -> None:
    if app.rebalancing or app.in_recovery:
        return
    await expire_due(time.time())
