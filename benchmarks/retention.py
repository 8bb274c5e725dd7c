"""Benchmark: bounded state. A worker's memory and recovery time with N finished sagas in the
tables, and again once retention removed them (make bench-retention).

1. N finished sagas (completed partner-creation sagas, ~2 KB each, last updated two days
   ago) are written straight into a fresh app's `sagas` changelog, in the partitions the
   saga agent would have written them to, and a snapshot row of each into PostgreSQL (a
   stand-in holding the version, which is what retention checks before removing a saga).
2. A fresh worker (empty DATADIR, SAGA_RETENTION_S of 7 days: nothing expires) recovers the
   table: its time to /ready and its RSS once ready.
3. Another fresh worker with SAGA_RETENTION_S of one day: it recovers the same, then
   retention removes every saga (tombstones in the changelog); the time that takes.
4. A third fresh worker recovers the changelog after retention: time to /ready and RSS.

The snapshot mirror is off in these workers (SNAPSHOT_MIRROR=off: the snapshots exist
already); RSS is the worker process's own (VmRSS), after Python's allocator settled.

    uv run python -m benchmarks.retention [--sagas 1000000] [--json [PATH]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.report import child_pids, drop_run_leftovers, git_info, machine, rss_mib
from domain import decide
from domain.messages import AllianceCreated, PartnerCreated, PartnerData
from runtime.settings import Settings
from runtime.topics import ensure_topics
from snapshots.store import SnapshotStore
from tests.support.stack import KAFKA, PG_URL, require_stack
from tests.support.worker import Names, Worker

DAY = 86400.0
RSS_TARGET_MIB = 250


def _template(now: float) -> tuple[bytes, int]:
    """A completed saga's state with placeholder ids, and its version."""
    saga, partner = "S" * 36, "P" * 36
    partner_data = PartnerData(nombre="Partner Benchmark", email="bench@example.com",
                               telefono="+57 1 234 5678", direccion="Calle 1 # 2-3")
    d = decide(None, PartnerCreated(event_id=str(uuid.uuid4()), saga_id=saga, partner_id=partner,
                                    partner=partner_data), now)
    d = decide(d.state, AllianceCreated(event_id=str(uuid.uuid4()), saga_id=saga, partner_id=partner,
                                        alliance_id="A" * 36), now)
    assert d.state is not None and d.state.terminal
    return d.state.model_dump_json().encode(), d.state.version


async def _write(names: Names, n: int, now: float) -> float:
    settings = Settings(**names.env())  # type: ignore[arg-type]
    await ensure_topics(settings)
    template, version = _template(now - 2 * DAY)
    topic = f"{names.app_id}-sagas-changelog"
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, max_batch_size=1024 * 1024,
                                max_request_size=8 * 1024 * 1024, compression_type=None, acks=1)
    store = SnapshotStore(PG_URL, schema=names.app_id)
    await store.open()
    await store.migrate()
    await producer.start()
    t0 = time.monotonic()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partition_of = DefaultPartitioner()
        pending = []
        rows: list[tuple[Any, ...]] = []
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            for i in range(n):
                saga_id, partner_id = str(uuid.uuid4()), str(uuid.uuid4())
                key = saga_id.encode()
                value = template.replace(b"S" * 36, key).replace(b"P" * 36, partner_id.encode())
                pending.append(await producer.send(topic, key=key, value=value,
                                                   partition=partition_of(key, partitions, partitions)))
                rows.append((saga_id, version, "completed", "partner_event", saga_id, partner_id,
                             now - 2 * DAY, now - 2 * DAY))
                if len(pending) >= 20_000 or i == n - 1:
                    await asyncio.gather(*pending)
                    pending.clear()
                    await _copy(conn, names.app_id, rows)
                    rows.clear()
                    print(f"  written {i + 1:,} of {n:,}", end="\r", flush=True)
        await producer.flush()
    finally:
        await producer.stop()
        await store.close()
    print()
    return time.monotonic() - t0


async def _copy(conn: psycopg.AsyncConnection[Any], schema: str, rows: list[tuple[Any, ...]]) -> None:
    sql = (f'COPY "{schema}".saga_snapshots (saga_id, version, status, origin, correlation_id, '
           "partner_id, created_at, updated_at, state) FROM STDIN")
    async with conn.cursor() as cur, cur.copy(sql) as copy:
        for saga_id, version, status, origin, corr, partner, created, updated in rows:
            await copy.write_row((saga_id, version, status, origin, corr, partner,
                                  _ts(created), _ts(updated), "{}"))


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))


async def _metric(worker: Worker, name: str) -> float:
    _, text = await worker.get("/metrics")
    for line in str(text).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _recover(names: Names, folder: Path, tag: str, env: dict[str, str],
                   within_s: float) -> tuple[Worker, float, float]:
    """A fresh worker (empty DATADIR): (worker, seconds to /ready, RSS MiB once ready)."""
    worker = Worker(names, folder / tag, env={"SNAPSHOT_MIRROR": "off", **env}, name=tag)
    t0 = time.monotonic()
    worker.start()
    await worker.wait_ready(timeout=within_s)
    ready = time.monotonic() - t0
    await asyncio.sleep(3)  # let the allocator settle after recovery
    assert worker.proc is not None
    children = _children_rss_mib(worker.proc.pid)
    print(f"  ({tag}: the worker's child processes, the bridges': {children:.0f} MiB besides)")
    return worker, ready, rss_mib(worker.proc.pid)


def _children_rss_mib(pid: int) -> float:
    """VmRSS of the worker's direct children (its bridges' process)."""
    total = 0.0
    for child in child_pids(pid):
        try:
            total += rss_mib(child)
        except (OSError, RuntimeError):
            continue
    return total


async def run(n: int, within_s: float) -> dict[str, Any]:
    require_stack()
    names = Names()
    folder = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    now = time.time()
    figures: dict[str, Any] = {"benchmark": "retention", "sagas": n, "rss_target_mib": RSS_TARGET_MIB,
                               "git": git_info(), "machine": machine()}
    worker = None
    try:
        print(f"retention benchmark: {n:,} finished sagas written into the sagas changelog")
        figures["write_s"] = await _write(names, n, now)
        print(f"  written in {figures['write_s']:.1f}s")

        worker, ready, rss = await _recover(names, folder, "before", {"SAGA_RETENTION_S": str(7 * DAY)},
                                            within_s)
        worker.stop()
        figures.update(recovery_s=ready, rss_mib=rss)
        print(f"fresh worker, {n:,} sagas stored: ready after {ready:.1f}s, RSS {rss:.0f} MiB "
              f"(target <= {RSS_TARGET_MIB})")

        worker, ready, rss = await _recover(names, folder, "retention",
                                            {"SAGA_RETENTION_S": str(DAY), "RETENTION_TICK_S": "0.5"},
                                            within_s)
        t0 = time.monotonic()
        while (gone := await _metric(worker, "saga_sagas_expired_total")) < n:
            if time.monotonic() - t0 > within_s:
                raise TimeoutError(f"retention removed {gone:,.0f} of {n:,} sagas in {within_s:.0f}s")
            print(f"  removed {gone:,.0f} of {n:,}", end="\r", flush=True)
            await asyncio.sleep(1)
        figures["retention_s"] = time.monotonic() - t0
        worker.stop()
        print(f"\nretention removed {n:,} sagas in {figures['retention_s']:.1f}s "
              f"({n / figures['retention_s']:,.0f}/s)")

        worker, ready, rss = await _recover(names, folder, "after", {"SAGA_RETENTION_S": str(7 * DAY)},
                                            within_s)
        worker.stop()
        figures.update(recovery_after_s=ready, rss_after_mib=rss)
        print(f"fresh worker after retention (changelog: {n:,} states and {n:,} tombstones, "
              f"not compacted yet): ready after {ready:.1f}s, RSS {rss:.0f} MiB")
        figures["points"] = [{"stored_sagas": n, "rss_mib": figures["rss_mib"]},
                             {"stored_sagas": 0, "rss_mib": rss}]
        return figures
    finally:
        if worker is not None:
            worker.stop()
        shutil.rmtree(folder, ignore_errors=True)
        await drop_run_leftovers(names.app_id)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=1_000_000)
    p.add_argument("--timeout", type=float, default=1800.0, help="per phase, seconds")
    p.add_argument("--json", nargs="?", const="-", default=None,
                   help="also write the figures as JSON to PATH (or, alone, as the last stdout line)")
    args = p.parse_args()
    figures = asyncio.run(run(args.sagas, args.timeout))
    if args.json == "-":
        print(json.dumps(figures), flush=True)
    elif args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
