"""PostgreSQL snapshots mirror the tables: they converge to the tables after a load, also after
PostgreSQL was down; rebuilt from the changelog; restoring the tables when the changelog is
lost; and any worker answers a saga's live status."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from snapshots.store import TERMINAL_STATUSES
from tests.support.flows import ended, publish_partners
from tests.support.pg import snapshot_states, truncate_snapshots
from tests.support.stack import KAFKA
from tests.support.worker import ROOT, Names, Worker

pytestmark = pytest.mark.stack


def _stack(*args: str) -> None:
    subprocess.run([ROOT / "stack/stack.sh", *args], check=True, timeout=120, capture_output=True)


async def _table_states(worker: Worker, saga_ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for saga_id in saga_ids:
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200, body
        assert body.pop("source") == "live"  # the table's state, not the snapshot's
        body.pop("commands")  # shown from `applied`, which the comparison leaves out too
        out[saga_id] = body
    return out


def _same(snapshot: dict[str, Any], table: dict[str, Any]) -> bool:
    return {k: v for k, v in snapshot.items() if k != "applied"} == table


async def _wait_equal(names: Names, table: dict[str, dict[str, Any]], within: float) -> float:
    """Seconds until every saga's snapshot equals its table state."""
    t0 = time.monotonic()
    while True:
        snaps = await snapshot_states(names.app_id)
        behind = [s for s, state in table.items() if s not in snaps or not _same(snaps[s], state)]
        if not behind:
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise AssertionError(f"{len(behind)} of {len(table)} snapshots differ from the table "
                                 f"after {within}s, e.g. {behind[0]}")
        await asyncio.sleep(0.2)


def _run(names: Names, command: str) -> str:
    run = subprocess.run([sys.executable, "-m", "snapshots", command], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, **names.env()})
    assert run.returncode == 0, run.stderr
    return run.stdout


async def test_snapshots_equal_the_tables_also_after_postgres_was_down_20s(
        spawn, participants, taps, names) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    published: list[str] = []

    async def load() -> None:  # 20 sagas a second for 30 s
        for _ in range(30):
            published.extend(await publish_partners(participants, 20))
            await asyncio.sleep(1)

    loading = asyncio.ensure_future(load())
    await asyncio.sleep(5)
    _stack("down", "postgres")
    try:
        await asyncio.sleep(2)
        status, ready = await worker.get("/ready")
        assert status == 503 and ready["checks"]["postgres"]["ok"] is False
        await asyncio.sleep(18)
    finally:
        _stack("up", "postgres")
    await loading
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 600, 180, "600 sagas to end")
    load_stopped = time.monotonic()
    finals = ended(taps["lifecycle"])
    # Watch PostgreSQL until every saga's final state is there; then check those snapshots
    # against the tables (terminal: they no longer change). How fast is not this test's
    # question: the bound only stops a hung run, and holds on a machine several times slower.
    while True:
        snaps = await snapshot_states(names.app_id)
        if all(s in snaps and snaps[s]["status"] in TERMINAL_STATUSES for s in finals):
            break
        assert time.monotonic() - load_stopped < 120, "snapshots did not catch up in 120s"
        await asyncio.sleep(0.1)
    table = await _table_states(worker, list(finals))
    assert all(_same(snaps[s], table[s]) for s in finals)
    status, ready = await worker.get("/ready")
    assert status == 200 and ready["ready"] is True, ready
    _, metrics = await worker.get("/metrics")
    assert "saga_snapshot_write_failures_total" in metrics and "saga_snapshot_lag_records 0" in metrics


async def test_any_worker_answers_any_saga_status(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    a, b = spawn("a"), spawn("b")
    await asyncio.gather(a.wait_ready(timeout=60), b.wait_ready(timeout=60))
    await asyncio.sleep(3)  # both members in the group before the load
    await publish_partners(participants, 300)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 300, 60, "300 sagas to end")
    finals = ended(taps["lifecycle"])
    want = {"SagaCompleted": "completed", "SagaCompensated": "compensated"}
    for saga_id in random.Random(7).sample(sorted(finals), 200):
        for worker in (a, b):
            status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
            assert status == 200, (worker.name, body)
            assert body["saga_id"] == saga_id and body["status"] == want[finals[saga_id][0]]


async def test_rebuild_and_restore(spawn, participants, taps, names) -> None:  # type: ignore[no-untyped-def]
    worker = spawn("a")
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 100)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 100, 60, "100 sagas to end")
    table = await _table_states(worker, list(ended(taps["lifecycle"])))
    await _wait_equal(names, table, within=10)

    # Rebuild: snapshots lost, written again from the changelog.
    await truncate_snapshots(names.app_id)
    assert await snapshot_states(names.app_id) == {}
    assert "100 sagas rebuilt" in _run(names, "rebuild")
    await _wait_equal(names, table, within=1)

    # Restore: the cluster lost the changelogs; the tables come back from the snapshots.
    worker.kill()
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        changelogs = [f"{names.app_id}-{t}-changelog" for t in ("sagas", "partner-sagas")]
        await admin.delete_topics(changelogs)
        for _ in range(100):
            if not set(changelogs) & set(await admin.list_topics()):
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    assert "100 sagas restored" in _run(names, "restore")
    fresh = spawn("b")  # a new worker, empty datadir: its tables come from the restored changelogs
    await fresh.wait_ready(timeout=60)
    assert await _table_states(fresh, list(table)) == table
    # The partner index came back too: a reply naming only a partner still finds its saga.
    some = next(iter(table.values()))
    status, body = await fresh.get(f"/api/v1/saga/status/{some['saga_id']}")
    assert status == 200 and body["partner_id"] == some["partner_id"]
