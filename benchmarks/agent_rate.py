"""Benchmark: the saga agent's rate against a pass-through Faust agent's (make bench-agent).

Each side gets the same backlog: N events already in an 8-partition Kafka topic before its
worker starts, so the figure is the agents' rate, not a producer's.
- pass-through: benchmarks/passthrough.py, one agent forwarding each record to another topic,
  with the orchestrator's Faust settings;
- saga agent: the real worker (python -m orchestrator worker, all its agents and bridges
  running), N PartnerCreated events for N new sagas on `<APP_ID>-events`, as the partner
  router writes them. Each one is decoded, decided, stored (sagas and deadline tables) and
  sends its commands (CreateAlliance, SagaStarted) on to Pulsar.
A side's rate is (N - 1) / (time of its last output - time of its first), from the Kafka
timestamps of what it wrote: `<APP_ID>-out` for the pass-through, the `sagas` table's
changelog for the saga agent (one record per event).

    uv run python -m benchmarks.agent_rate [--events 20000] [--json PATH] [--profile DIR]
    (make bench-agent EVENTS=20000 PROFILE=1)

With --profile, py-spy samples each side's whole process tree (every thread, the mirror
child) while it works, and the run prints where the CPU per event goes, part by part of the
design (benchmarks/profile.py); the recordings stay in DIR.

benchmarks/saga_throughput.py measures the pass-through side too (pass_through_rate), as the
yardstick of its end-to-end figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks import profile
from benchmarks.report import add_json_arg, drop_run_leftovers, write_json
from domain import ids
from tests.support.flows import partner_created
from tests.support.stack import KAFKA, KAFKA_URL, require_stack
from tests.support.worker import ROOT, Names, Worker, free_port
from wire.cloudevents import decode_inbound
from wire.internal import SagaEnvelope

PARTITIONS = 8


def saga_events(n: int) -> list[tuple[bytes, bytes]]:
    """N PartnerCreated events for N new sagas, keyed and wrapped as the partner router
    writes them to `<APP_ID>-events`: the records both sides of the comparison consume."""
    out = []
    for i in range(n):
        partner_id = str(uuid.uuid4())
        raw = partner_created(partner_id, i)
        inbound = decode_inbound(raw)
        saga_id = ids.saga_id_for_partner(partner_id)
        env = SagaEnvelope(event=inbound.event(saga_id), raw=inbound.text,
                           origin="persistent://public/default/partner-events")
        out.append((saga_id.encode(), env.model_dump_json().encode()))
    return out


async def _fill(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _written(topic: str, expect: int, within_s: float, alive: Callable[[], str | None]
                   ) -> tuple[float, float]:
    """Wait until `topic` holds `expect` records; return the first and last timestamps (s).
    `alive` returns why the writer is gone, or None while it runs."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + within_s
        while not (parts := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} was never created")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        seen, first, last = 0, float("inf"), 0.0
        while seen < expect:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {seen} of {expect} records after {within_s:.0f}s")
            if (gone := alive()) is not None:
                raise RuntimeError(f"{topic}: {seen} of {expect} records; the worker is gone: {gone}")
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen += len(records)
                first = min(first, *(r.timestamp / 1000 for r in records))
                last = max(last, *(r.timestamp / 1000 for r in records))
        return first, last
    finally:
        await consumer.stop()


async def _topics(admin: AIOKafkaAdminClient, *names: str) -> None:
    await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])


async def _drop(admin: AIOKafkaAdminClient, prefix: str) -> None:
    mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
    if mine:
        await admin.delete_topics(mine)


def _start_pass_through(app_id: str, folder: Path) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {**os.environ, "APP_ID": app_id, "KAFKA_BROKER_URL": KAFKA_URL,
           "DATADIR": str(folder / "pt"), "WEB_PORT": str(port)}
    with open(folder / "pass-through.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.passthrough", "worker", "-l", "warn",
                                 "--web-port", str(port)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


#: CPU seconds (user + system) of each side's process and its children, read when its last
#: output was written: start-up included, so per event it is a little high on small runs.
CPU_SECONDS: dict[str, float] = {}
#: Where each side's py-spy recording goes (--profile), and the running recorders.
PROFILE_DIR: Path | None = None
_RECORDERS: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}


def _profile_start(side: str, pid: int) -> None:
    if PROFILE_DIR is not None:
        out = PROFILE_DIR / f"profile-{side}.txt"
        _RECORDERS[side] = (profile.record(pid, 900, out), out)


def _profile_stop(side: str) -> None:
    """Stop the side's recorder (py-spy writes its file on SIGINT)."""
    if side not in _RECORDERS:
        return
    proc, out = _RECORDERS[side]
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"py-spy did not stop; no recording at {out}") from None
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no recording at {out}: {err.decode(errors='replace')[-500:]}")


def _cpu_seconds(pid: int) -> float:
    """CPU of a process and its direct children (the worker's snapshot mirror)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def pass_through_rate(n: int, records: list[tuple[bytes, bytes]], admin: AIOKafkaAdminClient,
                            folder: Path) -> float:
    app_id = f"bench-pt-{uuid.uuid4().hex[:8]}"
    proc = None
    try:
        await _topics(admin, f"{app_id}-in", f"{app_id}-out")
        await _fill(f"{app_id}-in", records)
        proc = _start_pass_through(app_id, folder)
        _profile_start("pass-through", proc.pid)
        first, last = await _written(
            f"{app_id}-out", n, 300,
            lambda: None if proc.poll() is None else (folder / "pass-through.log").read_text()[-2000:])
        CPU_SECONDS["pass-through"] = _cpu_seconds(proc.pid)
        _profile_stop("pass-through")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await _drop(admin, f"{app_id}-")
    return (n - 1) / (last - first)


async def saga_agent_rate(n: int, records: list[tuple[bytes, bytes]], admin: AIOKafkaAdminClient,
                          folder: Path) -> float:
    names = Names()
    worker = Worker(names, folder / "saga")
    try:
        await _topics(admin, f"{names.app_id}-events")
        await _fill(f"{names.app_id}-events", records)
        worker.start()
        assert worker.proc is not None
        _profile_start("saga", worker.proc.pid)
        first, last = await _written(
            f"{names.app_id}-sagas-changelog", n, 600,
            lambda: None if worker.proc is None or worker.proc.poll() is None else worker.log()[-2000:])
        CPU_SECONDS["saga"] = _cpu_seconds(worker.proc.pid)
        _profile_stop("saga")
    finally:
        worker.stop()
        await _drop(admin, f"{names.app_id}-")
        await drop_run_leftovers(names.app_id)  # its PostgreSQL snapshot schema too
    return (n - 1) / (last - first)


async def measure_pass_through(n: int) -> float:
    """The pass-through agent's events/s on a backlog of n saga events (its own admin client,
    temporary folder and topics, all gone afterwards)."""
    require_stack()
    folder = Path(tempfile.mkdtemp(prefix="bench-pt-"))
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        return await pass_through_rate(n, saga_events(n), admin, folder)
    finally:
        await admin.close()
        shutil.rmtree(folder, ignore_errors=True)


async def run(n: int, json_path: Path | None) -> None:
    require_stack()
    folder = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    records = saga_events(n)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        passing = await pass_through_rate(n, records, admin, folder)
        saga = await saga_agent_rate(n, records, admin, folder)
    finally:
        await admin.close()
        shutil.rmtree(folder, ignore_errors=True)
    size = sum(len(v) for _, v in records) / n
    print(f"events: {n} per side, {size:.0f} bytes each, {PARTITIONS} partitions, one worker")
    print(f"pass-through Faust agent: {passing:,.0f} events/s")
    print(f"saga agent (whole worker): {saga:,.0f} events/s")
    print(f"saga / pass-through: {saga / passing:.2f} (the design asks for 0.5 or more)")
    cpu = {side: 1000 * seconds / n for side, seconds in CPU_SECONDS.items()}
    print(f"CPU per event (process and children, start-up included): pass-through "
          f"{cpu['pass-through']:.3f} ms, saga worker {cpu['saga']:.3f} ms")
    if PROFILE_DIR is not None:
        for side, (_, out) in _RECORDERS.items():
            print(f"\nwhere the {side} side's CPU goes (py-spy, {out}):")
            print(profile.table(profile.summarize(out), cpu[side]))
    write_json(json_path, {"benchmark": "agent_rate", "events": n, "partitions": PARTITIONS,
                           "event_bytes": size, "pass_through_events_per_s": passing,
                           "saga_agent_events_per_s": saga, "ratio": saga / passing, "target_ratio": 0.5,
                           "cpu_ms_per_event": cpu})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--profile", type=Path, help="record each side with py-spy into this folder")
    add_json_arg(p)
    args = p.parse_args()
    global PROFILE_DIR
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile
    asyncio.run(run(args.events, args.json))


if __name__ == "__main__":
    main()
