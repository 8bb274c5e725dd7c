"""Long-running parts of a worker besides the agents: the snapshot store and its mirror,
and what GET /ready reports."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from orchestrator.app import app, cfg
from orchestrator.metrics import METRICS
from snapshots.errors import StoreUnavailable
from snapshots.mirror import ChangelogMirror
from snapshots.store import SnapshotStore

__all__ = ["MIRROR", "STORE", "readiness"]

log = logging.getLogger(__name__)
STORE = SnapshotStore(cfg.database_url, schema=cfg.snapshot_schema)
MIRROR = ChangelogMirror(cfg, STORE)
_state = {"joined": False}


@app.on_rebalance_complete.connect
async def _joined(sender: Any, **kwargs: Any) -> None:
    _state["joined"] = True


@app.task
async def mirror_snapshots() -> None:
    """Keep the mirror running; a crash (Kafka unreachable a while) restarts it."""
    await STORE.open()
    delay = 1.0
    while True:
        try:
            await MIRROR.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("snapshot mirror failed; restarting in %.0fs", delay)
            METRICS.inc("snapshot_mirror_restarts_total")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def readiness(pulsar_topics: set[str], subscribed: set[str], outbound: set[str],
                    producing: set[str]) -> dict[str, Any]:
    """Each dependency's state; ready when all are."""
    kafka_ok = _state["joined"] and not app.rebalancing and not app.in_recovery
    try:
        await asyncio.wait_for(STORE.ping(), timeout=3)
        pg: dict[str, Any] = {"ok": MIRROR.migrated, "schema_ready": MIRROR.migrated}
    except (StoreUnavailable, TimeoutError) as exc:
        pg = {"ok": False, "error": str(exc) or "timed out", "schema_ready": MIRROR.migrated}
    missing = sorted(pulsar_topics - subscribed)
    no_producer = sorted(outbound - producing)
    checks = {
        "kafka": {"ok": kafka_ok, "group_joined": _state["joined"], "rebalancing": bool(app.rebalancing),
                  "recovering": bool(app.in_recovery)},
        "pulsar": {"ok": not missing and not no_producer, "subscribed": sorted(subscribed),
                   "missing": missing, "producers_missing": no_producer},
        "postgres": pg,
    }
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}
