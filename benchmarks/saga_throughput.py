"""Benchmark: completed sagas per second end to end, on the local stack (make dev-up).

One orchestrator worker (a subprocess, as deployed), the participant simulators in this
process answering at once, and N sagas started by PartnerCreated events published to Pulsar
as fast as the producer takes them. Measures from the first publish to the N-th terminal
lifecycle notice, and each saga's latency (its PartnerCreated published -> its SagaCompleted
received).

    uv run python -m benchmarks.saga_throughput [--sagas 5000]      (make bench-e2e)
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


async def run(sagas: int) -> None:
    require_stack()
    names = Names()
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    worker = Worker(names, folder / "data").start()
    sims = Participants(PULSAR_URL, Behaviour(), integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events)
    client = connect(PULSAR_URL)
    try:
        await worker.wait_ready(timeout=60)
        await sims.start()
        lifecycle = await Tap(client, names.lifecycle).start()
        ids = [str(uuid.uuid4()) for _ in range(sagas)]
        payloads = [partner_created(pid, n) for n, pid in enumerate(ids)]
        sent_at: dict[str, float] = {}
        t0 = time.monotonic()
        producer = sims._producers[sims.partner_events]
        sends = []
        for pid, payload in zip(ids, payloads, strict=True):
            sent_at[pid] = time.time()
            sends.append(producer.send(payload, partition_key=pid))
            if len(sends) >= 1000:
                await asyncio.gather(*sends)
                sends = []
        await asyncio.gather(*sends)
        published = time.monotonic() - t0
        done: dict[str, float] = {}
        while len(done) < sagas:
            for m in lifecycle.messages[len(done):]:
                ce = json.loads(m.data)
                if ce["type"] == "SagaCompleted":
                    done[ce["data"]["partner_id"]] = m.at
            if time.monotonic() - t0 > 600:
                raise TimeoutError(f"only {len(done)} of {sagas} sagas completed in 600s")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        lat = sorted(done[p] - sent_at[p] for p in ids)
        print(f"sagas: {sagas}; published in {published:.2f}s; all completed in {elapsed:.2f}s")
        print(f"throughput: {sagas / elapsed:,.0f} completed sagas/s end to end")
        print(f"saga latency (PartnerCreated published -> SagaCompleted received): "
              f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms")
        _, metrics = await worker.get("/metrics")
        hist = [line for line in metrics.splitlines() if line.startswith("saga_step_latency_seconds")]
        print("step latency (bridge receipt -> saga agent), from /metrics:")
        for line in hist:
            print("  " + line)
        await lifecycle.stop()
    finally:
        await sims.stop()
        await client.close()
        worker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=5000)
    asyncio.run(run(p.parse_args().sagas))


if __name__ == "__main__":
    main()
