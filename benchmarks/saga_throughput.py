"""Benchmark: completed sagas per second end to end, on the local stack (make dev-up).

One orchestrator worker (a subprocess, as deployed), the participant simulators in this
process answering at once, and N sagas started by PartnerCreated events published to Pulsar
as fast as the producer takes them. Measures from the first publish to the N-th terminal
lifecycle notice, and each saga's latency (its PartnerCreated published -> its SagaCompleted
received).

    uv run python -m benchmarks.saga_throughput [--sagas 5000]      (make bench-e2e)

--rate R paces the starts at R sagas/s instead of all at once: the latency figures then show
a load the worker keeps up with, not the queue of a burst. --echo-sagaid makes the simulated
participants echo the saga id, so their replies skip the routing hop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from simulators.participants import Behaviour, Participants
from tests.support.flows import partner_created
from tests.support.pulsar import Tap, connect
from tests.support.stack import PULSAR_URL, require_stack
from tests.support.worker import Names, Worker


async def _load(sims: Participants, lifecycle: Tap, sagas: int, rate: float | None
                ) -> tuple[float, float, list[float]]:
    """Start `sagas` sagas; wait for all to complete. Returns (publish time, total time,
    sorted per-saga latencies)."""
    ids = [str(uuid.uuid4()) for _ in range(sagas)]
    payloads = [partner_created(pid, n) for n, pid in enumerate(ids)]
    sent_at: dict[str, float] = {}
    seen = len(lifecycle.messages)
    done: dict[str, float] = {}
    t0 = time.monotonic()
    producer = sims._producers[sims.partner_events]
    sends = []
    for n, (pid, payload) in enumerate(zip(ids, payloads, strict=True)):
        if rate is not None and (ahead := t0 + n / rate - time.monotonic()) > 0:
            await asyncio.sleep(ahead)
        sent_at[pid] = time.time()
        sends.append(producer.send(payload, partition_key=pid))
        if len(sends) >= (1000 if rate is None else 1):
            await asyncio.gather(*sends)
            sends = []
    await asyncio.gather(*sends)
    published = time.monotonic() - t0
    while len(done) < sagas:
        for m in lifecycle.messages[seen:]:
            ce = json.loads(m.data)
            if ce["type"] == "SagaCompleted" and ce["data"]["partner_id"] in sent_at:
                done[ce["data"]["partner_id"]] = m.at
        seen = len(lifecycle.messages)
        if time.monotonic() - t0 > 600:
            raise TimeoutError(f"only {len(done)} of {sagas} sagas completed in 600s")
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - t0
    return published, elapsed, sorted(done[p] - sent_at[p] for p in ids)


async def _step_histogram(worker: Worker) -> list[tuple[str, float]]:
    _, metrics = await worker.get("/metrics")
    return [(line.split('le="')[1].split('"')[0], float(line.rsplit(" ", 1)[1]))
            for line in metrics.splitlines() if line.startswith("saga_step_latency_seconds_bucket")]


async def run(sagas: int, rate: float | None, echo_sagaid: bool, warmup: int) -> None:
    require_stack()
    names = Names()
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    worker = Worker(names, folder / "data").start()
    sims = Participants(PULSAR_URL, Behaviour(echo_sagaid=echo_sagaid),
                        integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events)
    client = connect(PULSAR_URL)
    try:
        await worker.wait_ready(timeout=60)
        await sims.start()
        lifecycle = await Tap(client, names.lifecycle).start()
        if warmup:  # new topics, connections and caches: not what the figures are about
            await _load(sims, lifecycle, warmup, rate or 200.0)
        before = await _step_histogram(worker)
        published, elapsed, lat = await _load(sims, lifecycle, sagas, rate)
        after = await _step_histogram(worker)
        print(f"sagas: {sagas} ({'all at once' if rate is None else f'{rate:g}/s'}, participants "
              f"{'echo' if echo_sagaid else 'do not echo'} sagaid, after {warmup} warm-up sagas); "
              f"published in {published:.2f}s; all completed in {elapsed:.2f}s")
        print(f"throughput: {sagas / elapsed:,.0f} completed sagas/s end to end")
        print(f"saga latency (PartnerCreated published -> SagaCompleted received): "
              f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms")
        buckets = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
        print("step latency (bridge receipt -> saga agent decision), these sagas' steps, cumulative:")
        print("  " + "  ".join(f"<={le}s: {n:.0f}" for le, n in buckets))
        total = buckets[-1][1]
        for q in (0.5, 0.99):
            print(f"  p{q * 100:g} <= {next(le for le, n in buckets if n >= q * total)} s")
        await lifecycle.stop()
    finally:
        await sims.stop()
        await client.close()
        worker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=5000)
    p.add_argument("--rate", type=float, default=None, help="start this many sagas per second")
    p.add_argument("--echo-sagaid", action="store_true", help="participants echo the saga id")
    p.add_argument("--warmup", type=int, default=500, help="sagas run first and not measured")
    args = p.parse_args()
    asyncio.run(run(args.sagas, args.rate, args.echo_sagaid, args.warmup))


if __name__ == "__main__":
    main()
