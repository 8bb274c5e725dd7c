"""Retention: finished sagas leave the live tables SAGA_RETENTION_S after their last update,
so that the tables (RocksDB, changelogs, recovery time) hold what is live and recent, not
every saga ever run.

On every worker, for the partitions it actively owns: the expired ones are read from the
index (tables/deadline_index.py), their snapshots are checked in PostgreSQL in one query
(a saga whose final state is not there yet waits: the snapshot is what answers for it
afterwards), and each is sent a ForgetSaga in its own stream. The saga agent removes it only
if it is still finished at the version seen here. PostgreSQL down: nothing expires until it
is back.
"""

from __future__ import annotations

import json
import logging
import time

from agents.deadlines import active_partitions
from orchestrator.app import app, cfg
from orchestrator.metrics import METRICS
from orchestrator.services import STORE
from snapshots.errors import StoreUnavailable
from streams.partner_saga import saga_events
from tables.partner_saga import DEADLINES, sagas
from wire.internal import ForgetSaga

__all__ = ["expire_due", "expire_sagas"]

log = logging.getLogger(__name__)

#: At most this many sagas leave per tick and worker (a backlog drains over a few ticks).
MAX_PER_TICK = 2000
# saga id -> when this worker sent its ForgetSaga: not sent again for a while.
_sent: dict[str, float] = {}
RESEND_AFTER_S = 60.0


async def expire_due(now: float) -> int:
    for saga_id in [s for s, t in _sent.items() if now - t > RESEND_AFTER_S]:
        del _sent[saga_id]
    due = [(p, s, v) for p, s, v in DEADLINES.expired(active_partitions(), now, MAX_PER_TICK)
           if s not in _sent]
    if not due:
        return 0
    try:
        snapshotted = await STORE.versions([s for _, s, _ in due])
    except StoreUnavailable as exc:
        log.warning("retention: %s; finished sagas stay until PostgreSQL answers", exc)
        return 0
    sent = 0
    for _, saga_id, version in due:
        if snapshotted.get(saga_id, -1) < version:
            continue  # its final state is not in PostgreSQL yet
        raw = sagas.get(saga_id)
        partner_id = _partner_of(raw)
        msg = ForgetSaga(forget=saga_id, version=version, partner_id=partner_id)
        await saga_events.send(key=saga_id.encode(), value=msg.model_dump_json().encode())
        _sent[saga_id] = now
        sent += 1
    if sent:
        METRICS.inc("retention_forget_sent_total", sent)
        log.info("retention: %d finished sagas leave the live tables", sent)
    return sent


def _partner_of(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    partner_id = json.loads(raw).get("partner_id")
    return partner_id if isinstance(partner_id, str) else None


@app.timer(interval=cfg.retention_tick_s, name="retention-timer")
async def expire_sagas() -> None:
    if app.rebalancing or app.in_recovery:
        return
    await expire_due(time.time())
