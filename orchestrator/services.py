"""Long-running parts of a worker besides the agents: the snapshot store and its mirror,
and what GET /ready reports."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from bridges.outbox import OUTBOX_BRIDGE
from bridges.pulsar_inbound import SUBSCRIBE_ERRORS, SUBSCRIBED
from bridges.pulsar_outbound import FAILING_TOPICS
from common.retry import policy
from orchestrator.mirror_process import MirrorProcess
from runtime.app import app, cfg
from runtime.errors import StoreUnavailable
from runtime.metrics import METRICS
from snapshots.mirror import ChangelogMirror
from snapshots.store import store_from_settings
from streams.partner_saga import saga_events

__all__ = ["BRIDGE", "MIRROR", "STORE", "readiness"]

log = logging.getLogger(__name__)
STORE = store_from_settings(cfg)
#: The snapshot mirror as SNAPSHOT_MIRROR says: a child process, or on this event loop.
MIRROR: MirrorProcess | ChangelogMirror = (
    MirrorProcess(METRICS) if cfg.snapshot_mirror == "process" else ChangelogMirror(cfg, STORE))
#: Failing Pulsar topics the bridge process reported last (its share of FAILING_TOPICS).
_BRIDGE_FAILING: set[str] = set()


#: The bridge process runs for either bridge (bridges/__main__.py).
BRIDGE_PROCESS = cfg.outbox_bridge == "process" or cfg.inbound_bridge == "process"


def _bridge_report(report: dict[str, Any]) -> None:
    """The bridge process's failing topics and, when it runs the inbound bridge, the inbound
    topics it is subscribed to (and why not): shown in this worker's /ready."""
    failing = dict(report.get("failing_topics") or {})
    for topic in _BRIDGE_FAILING - failing.keys():
        FAILING_TOPICS.pop(topic, None)
    FAILING_TOPICS.update(failing)
    _BRIDGE_FAILING.clear()
    _BRIDGE_FAILING.update(failing)
    if cfg.inbound_bridge == "process":
        _replace(SUBSCRIBED, set(report.get("subscribed") or ()))
        _replace(SUBSCRIBE_ERRORS, dict(report.get("subscribe_errors") or {}))


def _replace(target: Any, value: Any) -> None:
    target.clear()
    target.update(value)


def _bridge_started() -> None:
    """A new bridge process: nothing subscribed until it says so; it follows these partitions."""
    if cfg.inbound_bridge == "process":
        SUBSCRIBED.clear()
    _tell_bridge()


def _tell_bridge() -> None:
    """The outbox bridge follows the outbox partitions of the sagas this worker actively owns
    (bridges/outbox.py): told after each rebalance, and when its process starts."""
    events_topic = saga_events.get_topic_name()
    partitions = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == events_topic)
    if BRIDGE_PROCESS:
        BRIDGE.tell({"partitions": partitions})
    if cfg.outbox_bridge == "inline":
        OUTBOX_BRIDGE.follow(partitions)


#: The bridges' own process (OUTBOX_BRIDGE=process, INBOUND_BRIDGE=process): bridges/__main__.py.
BRIDGE = MirrorProcess(METRICS, command=[sys.executable, "-m", "bridges", "outbox", "--report"],
                       on_report=_bridge_report, name="bridges", restarts="bridge_restarts_total",
                       restart_policy="bridge-restart", niceness=0, on_start=_bridge_started)
_state = {"joined": False, "schema_ready": False}


@app.on_rebalance_complete.connect
async def _joined(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    _state["joined"] = True
    _tell_bridge()
    events_topic = saga_events.get_topic_name()
    METRICS.set("assigned_partitions",
                sum(1 for tp in app.assignor.assigned_actives() if tp.topic == events_topic))


@app.task
async def mirror_snapshots() -> None:
    """Keep the mirror running (restarted after a crash) where SNAPSHOT_MIRROR says."""
    await STORE.open()
    if cfg.snapshot_mirror == "off":
        log.info("snapshot mirror: off here (SNAPSHOT_MIRROR=off); run python -m snapshots mirror")
        await _migrate_until_done()  # the lists and /ready need the schema all the same
        return
    if isinstance(MIRROR, MirrorProcess):
        await MIRROR.run()
    else:
        await MIRROR.run_forever()


@app.task
async def bridge_process() -> None:
    """Keep the bridges' process running (OUTBOX_BRIDGE=process or INBOUND_BRIDGE=process),
    restarted when it exits; stopped with the worker."""
    if BRIDGE_PROCESS:
        await BRIDGE.run()


async def _migrate_until_done() -> None:
    """Create the schema, retried while PostgreSQL does not answer (policy "snapshot-schema")."""
    await policy("snapshot-schema").call(STORE.migrate, retry_on=(StoreUnavailable,), logger=log)
    _state["schema_ready"] = True


async def _schema_ready() -> bool:
    """The snapshot tables exist: the mirror created them, or (mirror off here) they answer."""
    if cfg.snapshot_mirror != "off":
        return MIRROR.migrated
    if not _state["schema_ready"]:
        _state["schema_ready"] = await STORE.schema_ready()
    return _state["schema_ready"]


async def readiness(pulsar_topics: set[str], subscribed: set[str], outbound: set[str],
                    producing: set[str], failing: dict[str, str],
                    subscribe_errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Each dependency's state; ready when all are. `failing`: topics whose last send failed
    for good (topic -> Pulsar's result name); `subscribe_errors`: why a consumer is not
    subscribed (topic -> Pulsar's error name, e.g. AuthorizationError)."""
    kafka_ok = _state["joined"] and not app.rebalancing and not app.in_recovery
    try:
        await asyncio.wait_for(STORE.ping(), timeout=3)  # a pooled connection, not a new one
        ready = await asyncio.wait_for(_schema_ready(), timeout=3)
        pg: dict[str, Any] = {"ok": ready, "schema_ready": ready}
    except StoreUnavailable as exc:
        pg = {"ok": False, "error": exc.public, "schema_ready": _state["schema_ready"]}
    except TimeoutError:
        pg = {"ok": False, "error": "PostgreSQL did not answer within 3s",
              "schema_ready": _state["schema_ready"]}
    missing = sorted(pulsar_topics - subscribed)
    no_producer = sorted(outbound - producing)
    checks: dict[str, dict[str, Any]] = {
        "kafka": {"ok": kafka_ok, "group_joined": _state["joined"], "rebalancing": bool(app.rebalancing),
                  "recovering": bool(app.in_recovery)},
        "pulsar": {"ok": not missing and not no_producer and not failing, "subscribed": sorted(subscribed),
                   "missing": missing, "producers_missing": no_producer,
                   "subscribe_errors": {t: e for t, e in sorted((subscribe_errors or {}).items())
                                        if t in missing},
                   "failing_topics": dict(sorted(failing.items()))},
        "postgres": pg,
    }
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}
