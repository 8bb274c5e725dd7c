"""Benchmark: completed sagas per second end to end, on the local stack (make dev-up).

First the yardstick: a pass-through Faust agent (benchmarks/passthrough.py, the orchestrator's
Faust settings) on a backlog of saga events in Kafka, as benchmarks/agent_rate.py measures it;
its worker is stopped before the saga worker starts, so the two do not share the CPU.

Then one orchestrator worker (a subprocess, as deployed), the participant simulators in this
process answering at once, and N sagas started by PartnerCreated events published to Pulsar
as fast as the producer takes them. Measures from the first publish to the N-th SagaCompleted,
and each saga's latency (its PartnerCreated published -> its SagaCompleted received). Prints
completed sagas/s and completed sagas per pass-through event (target >= 0.15, aim 0.2: a saga
is 4 consumed Faust events, 5 table writes and 3 Pulsar sends, so 0.2 is a saga costing five
pass-through events).

    uv run python -m benchmarks.saga_throughput [--sagas 5000]      (make bench-e2e)

--rate R paces the starts at R sagas/s instead of all at once: the latency figures then show
a load the worker keeps up with, not the queue of a burst. --echo-sagaid makes the simulated
participants echo the saga id, so their replies skip the routing hop.

--step-latency then runs a steady load at half the burst's completed-saga rate (or half of
--max-rate) for --step-seconds and prints the step latency (bridge receipt -> saga agent
decision, from the worker's /metrics histogram; target p99 <= 100 ms). --offered F,F,... and
--rates R,R,... add paced loads (fractions of that maximum, or sagas/s) of --paced-seconds
each, for a throughput-against-offered-load curve (make bench). Every load runs on the same
worker, one after the other, each waiting for its sagas to complete; --json PATH writes every
figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.agent_rate import measure_pass_through
from benchmarks.report import (
    add_json_arg,
    bucket_quantile,
    finish_run,
    percentile,
    quantiles,
    step_buckets,
    write_json,
)
from simulators.participants import Behaviour, Participants
from tests.support.flows import TERMINAL_EVENTS, partner_created
from tests.support.pulsar import Tap, connect
from tests.support.stack import PULSAR_URL, require_stack
from tests.support.worker import Names, Worker

TARGET_SAGAS_PER_PT_EVENT = 0.15  # issue #23; its aim is 0.2
STALL_S = 120.0  # a load with no saga completing for this long has failed
TARGET_STEP_P99_S = 0.1


@dataclass
class Load:
    """One measured load: sagas started at `offered` per second (None: all at once)."""

    role: str  # "burst", "paced", "step-latency"
    offered: float | None
    sagas: int
    published_s: float
    elapsed_s: float
    latencies: list[float]  # sorted, seconds
    buckets: list[tuple[float, float]]  # the step histogram over this load's steps, cumulative
    #: the same steps' Kafka part (saga event produced -> decision), cumulative
    wait_buckets: list[tuple[float, float]]

    @property
    def completed_per_s(self) -> float:
        return self.sagas / self.elapsed_s

    def describe(self) -> str:
        return "all at once" if self.offered is None else f"{self.offered:,.1f}/s"

    def step_quantile(self, q: float) -> float:
        return bucket_quantile(self.buckets, q)

    def figures(self) -> dict[str, Any]:
        lat = self.latencies
        steps = self.buckets[-1][1]
        return {
            "role": self.role, "offered_per_s": self.offered, "sagas": self.sagas,
            "published_s": self.published_s, "elapsed_s": self.elapsed_s,
            "completed_per_s": self.completed_per_s,
            "saga_latency_ms": {"p50": percentile(lat, 0.5) * 1000, "p99": percentile(lat, 0.99) * 1000,
                                "max": lat[-1] * 1000},
            "saga_latency_ms_percentiles": [round(x * 1000, 2) for x in quantiles(lat)],
            "steps": steps,
            "step_buckets": [["+Inf" if le == float("inf") else le, n] for le, n in self.buckets],
            "step_p50_le_ms": _ms(self.step_quantile(0.5)) if steps else None,
            "step_p99_le_ms": _ms(self.step_quantile(0.99)) if steps else None,
            "kafka_wait_buckets": [["+Inf" if le == float("inf") else le, n] for le, n in self.wait_buckets],
            "kafka_wait_p50_le_ms": _ms(bucket_quantile(self.wait_buckets, 0.5)) if steps else None,
            "kafka_wait_p99_le_ms": _ms(bucket_quantile(self.wait_buckets, 0.99)) if steps else None,
        }


def _ms(seconds: float) -> float | None:
    return None if seconds == float("inf") else seconds * 1000


async def _load(sims: Participants, lifecycle: Tap, sagas: int, rate: float | None,
                within_s: float) -> tuple[float, float, list[float]]:
    """Start `sagas` sagas; wait for all to complete. Returns (publish time, total time,
    sorted per-saga latencies)."""
    ids = [str(uuid.uuid4()) for _ in range(sagas)]
    payloads = [partner_created(pid, n) for n, pid in enumerate(ids)]
    sent_at: dict[str, float] = {}
    seen = len(lifecycle.messages)
    done: dict[str, float] = {}
    t0 = time.monotonic()
    producer = sims._producers[sims.partner_events]
    sends: list[asyncio.Future[Any]] = []
    for n, (pid, payload) in enumerate(zip(ids, payloads, strict=True)):
        if rate is not None and (ahead := t0 + n / rate - time.monotonic()) > 0:
            await asyncio.sleep(ahead)  # sends already queued go out meanwhile
        sent_at[pid] = time.time()
        sends.append(asyncio.ensure_future(producer.send(payload, partition_key=pid)))
        if len(sends) >= 1000:
            await asyncio.gather(*sends)
            sends = []
    await asyncio.gather(*sends)
    published = time.monotonic() - t0
    other: dict[str, str] = {}  # sagas that ended otherwise: the participants never fail here
    progress = time.monotonic()
    while len(done) < sagas:
        for m in lifecycle.messages[seen:]:
            ce = json.loads(m.data)
            pid = ce["data"].get("partner_id")
            if pid not in sent_at:
                continue
            if ce["type"] == "SagaCompleted":
                done[pid] = m.at
                progress = time.monotonic()
            elif ce["type"] in TERMINAL_EVENTS:
                other[pid] = ce["type"]
        seen = len(lifecycle.messages)
        if other:
            raise RuntimeError(f"{len(other)} sagas did not complete ({Counter(other.values())}), "
                               f"although the participants answer every command at once")
        if time.monotonic() - progress > STALL_S:
            raise TimeoutError(f"{len(done)} of {sagas} sagas completed, none in the last {STALL_S:.0f}s")
        if time.monotonic() - t0 > published + within_s:
            raise TimeoutError(f"only {len(done)} of {sagas} sagas completed {within_s:.0f}s after "
                               f"the last was started")
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - t0
    return published, elapsed, sorted(done[p] - sent_at[p] for p in ids)


class Bench:
    def __init__(self, worker: Worker, sims: Participants, lifecycle: Tap, within_s: float) -> None:
        self.worker, self.sims, self.lifecycle, self.within_s = worker, sims, lifecycle, within_s

    async def _histograms(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        _, metrics = await self.worker.get("/metrics")
        return step_buckets(metrics), step_buckets(metrics, "saga_step_kafka_wait_seconds")

    async def run(self, role: str, sagas: int, rate: float | None) -> Load:
        before = await self._histograms()
        published, elapsed, lat = await _load(self.sims, self.lifecycle, sagas, rate, self.within_s)
        after = await self._histograms()
        steps, waits = (_difference(a, b) for a, b in zip(after, before, strict=True))
        return Load(role, rate, sagas, published, elapsed, lat, steps, waits)


Buckets = list[tuple[float, float]]


def _difference(after: Buckets, before: Buckets) -> Buckets:
    if [le for le, _ in before] != [le for le, _ in after]:
        raise RuntimeError("a step histogram's buckets changed during the run")
    return [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]


def _print_load(load: Load, label: str) -> None:
    lat = load.latencies
    print(f"{label}: {load.sagas} sagas ({load.describe()}); published in {load.published_s:.2f}s; "
          f"all completed in {load.elapsed_s:.2f}s: {load.completed_per_s:,.1f} completed sagas/s")
    print(f"  saga latency (PartnerCreated published -> SagaCompleted received): "
          f"p50 {percentile(lat, 0.5) * 1000:.0f} ms, p99 {percentile(lat, 0.99) * 1000:.0f} ms")


def _print_steps(load: Load, target: bool) -> None:
    print("  step latency (bridge receipt -> saga agent decision), these sagas' steps, cumulative:")
    print("    " + "  ".join(f"<={'+Inf' if le == float('inf') else f'{le:g}s'}: {n:.0f}"
                             for le, n in load.buckets))
    if not load.buckets[-1][1]:
        print("    (no steps observed)")
        return
    p50, p99 = load.step_quantile(0.5), load.step_quantile(0.99)
    verdict = ""
    if target:
        verdict = (f"  (target p99 <= {TARGET_STEP_P99_S * 1000:.0f} ms: "
                   f"{'met' if p99 <= TARGET_STEP_P99_S else 'NOT met'})")
    print(f"  step p50 <= {_fmt_s(p50)}, p99 <= {_fmt_s(p99)}{verdict}")
    w50, w99 = bucket_quantile(load.wait_buckets, 0.5), bucket_quantile(load.wait_buckets, 0.99)
    print(f"  of which saga event produced to Kafka -> decision (the agent's consumer, queue, batch): "
          f"p50 <= {_fmt_s(w50)}, p99 <= {_fmt_s(w99)}")


def _fmt_s(seconds: float) -> str:
    return "+Inf" if seconds == float("inf") else f"{seconds * 1000:g} ms"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    require_stack()
    figures: dict[str, Any] = {"benchmark": "saga_throughput", "echo_sagaid": args.echo_sagaid,
                               "warmup": args.warmup, "loads": []}
    passing = None
    if args.passthrough_events:
        print(f"pass-through Faust agent on a backlog of {args.passthrough_events:,} saga events ...",
              flush=True)
        passing = await measure_pass_through(args.passthrough_events)
        print(f"pass-through Faust agent: {passing:,.0f} events/s", flush=True)
        figures["passthrough"] = {"events": args.passthrough_events, "events_per_s": passing}

    names = Names()
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    worker = Worker(names, folder / "data").start()
    sims = Participants(PULSAR_URL, Behaviour(echo_sagaid=args.echo_sagaid),
                        integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events)
    client = connect(PULSAR_URL)
    lifecycle = None
    failed = True
    try:
        await worker.wait_ready(timeout=120)
        await sims.start()
        lifecycle = await Tap(client, names.lifecycle).start()
        bench = Bench(worker, sims, lifecycle, args.within_s)
        if args.warmup:  # new topics, connections and caches: not what the figures are about
            await _load(sims, lifecycle, args.warmup, args.rate or 200.0, args.within_s)
        echo = "echo" if args.echo_sagaid else "do not echo"
        print(f"one worker; participants {echo} sagaid; after {args.warmup} warm-up sagas", flush=True)

        main_load = await bench.run("burst" if args.rate is None else "paced", args.sagas, args.rate)
        figures["loads"].append(main_load.figures())
        _print_load(main_load, "main load")
        _print_steps(main_load, target=False)
        print(f"throughput: {main_load.completed_per_s:,.1f} completed sagas/s end to end", flush=True)
        maximum = args.max_rate or (main_load.completed_per_s if args.rate is None else None)
        figures["max_completed_per_s"] = maximum
        if passing is not None:
            ratio = main_load.completed_per_s / passing
            note = "" if args.rate is None else " (a paced load: not the maximum rate)"
            print(f"completed sagas per pass-through event: {ratio:.3f}{note} "
                  f"(target >= {TARGET_SAGAS_PER_PT_EVENT:g}: "
                  f"{'met' if ratio >= TARGET_SAGAS_PER_PT_EVENT else 'NOT met'})", flush=True)
            figures["completed_sagas_per_passthrough_event"] = ratio
            figures["target_completed_sagas_per_passthrough_event"] = TARGET_SAGAS_PER_PT_EVENT

        if args.offered and not maximum:
            raise SystemExit("--offered needs a maximum: run the burst (no --rate) or give --max-rate")
        paced = sorted({*(f * maximum for f in args.offered if maximum), *args.rates})
        steady = None
        if args.step_latency:
            if not maximum:
                raise SystemExit("--step-latency needs a maximum: run the burst (no --rate) or give "
                                 "--max-rate")
            steady = maximum / 2
            paced = sorted({*paced, steady})
        for rate in paced:
            seconds = args.step_seconds if rate == steady else args.paced_seconds
            role = "step-latency" if rate == steady else "paced"
            load = await bench.run(role, max(20, round(rate * seconds)), rate)
            figures["loads"].append(load.figures())
            _print_load(load, "step-latency load (half the maximum)" if role == "step-latency"
                        else "paced load")
            _print_steps(load, target=role == "step-latency")
            if role == "step-latency":
                figures["step_latency"] = {
                    "rate_per_s": rate, "of_max_per_s": maximum, "steps": load.buckets[-1][1],
                    "p50_le_ms": _ms(load.step_quantile(0.5)), "p99_le_ms": _ms(load.step_quantile(0.99)),
                    "target_p99_ms": TARGET_STEP_P99_S * 1000}
            sys.stdout.flush()
        failed = False
        return figures
    finally:
        if lifecycle is not None:
            await lifecycle.stop()
        await sims.stop()
        await client.close()
        await finish_run(worker, folder, names.app_id, failed)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=5000, help="sagas of the main load")
    p.add_argument("--rate", type=float, default=None, help="start the main load's sagas at this rate per "
                   "second (default: all at once, which measures the maximum)")
    p.add_argument("--echo-sagaid", action="store_true", help="participants echo the saga id")
    p.add_argument("--warmup", type=int, default=500, help="sagas run first and not measured")
    p.add_argument("--passthrough-events", type=int, default=20_000,
                   help="backlog of the pass-through agent's run (0: skip it)")
    p.add_argument("--step-latency", action="store_true",
                   help="then a steady load at half the maximum completed-saga rate: step p50/p99")
    p.add_argument("--max-rate", type=float, default=None,
                   help="the maximum completed-saga rate to use instead of the main load's")
    p.add_argument("--step-seconds", type=float, default=30.0, help="length of the step-latency load")
    p.add_argument("--offered", type=_floats, default=[], metavar="F,F,...",
                   help="paced loads at these fractions of the maximum")
    p.add_argument("--rates", type=_floats, default=[], metavar="R,R,...", help="paced loads at these rates")
    p.add_argument("--paced-seconds", type=float, default=20.0, help="length of each paced load")
    p.add_argument("--within-s", type=float, default=600.0,
                   help="give up when a load's sagas have not completed this long after its last start")
    add_json_arg(p)
    args = p.parse_args()
    if (args.step_latency or args.offered) and args.rate is not None and args.max_rate is None:
        p.error("--step-latency and --offered need a maximum: leave out --rate (the burst measures it) "
                "or give --max-rate")
    figures = asyncio.run(run(args))
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
