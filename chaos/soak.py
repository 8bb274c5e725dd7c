"""make soak: a long steady load with a fault every few minutes, sampled over time.

Two workers share the partitions (the fault harness's world: its participants, some alliances
failing, some alianzas silent). Sagas start at --rate for --seconds; every --fault-every-s the
next fault of the cycle happens: a worker killed with SIGKILL (restarted at once on its data
directory, as Kubernetes restarts a pod), Kafka restarted, Pulsar restarted, PostgreSQL down
for 30 s. Every --sample-s one row: each worker's RSS (its process and children: bridges,
mirror), open file descriptors (the same processes), RocksDB size (its data directory), step
p99 over the interval (the workers' step histograms), the consumer group's lag (end minus
committed offsets over its topics), sagas live (started minus ended, from the lifecycle
topic) and ended; one progress line each on stdout. Finished sagas leave the live tables
after 2 minutes (SAGA_RETENTION_S=120), so the state reaches its steady size early.

At the end: the harness's table (nothing lost: every saga ended as the participants' choices
call for, once), samples.csv, charts (one per measure, the faults marked) and summary.json in
--out (default bench/results/soak-<date>/), and the trend verdict: after the first cycle
(the first len(cycle) faults), the last quarter's median of RSS, descriptors and RocksDB size
may not exceed the second quarter's by more than 10% (5 MiB, 5 descriptors at least), and
RocksDB's by no more than that plus TOMBSTONE_BYTES per saga ended in between (tombstones
are kept for good). With --fault-every-s 0 and a rate above what the workers keep up with,
summary.json's ended_per_s is their sustained maximum.

    uv run python -m chaos.soak --seconds 3600 [--rate 40] [--fault-every-s 240]   (make soak)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.report import bucket_quantile, child_pids, rss_mib, step_buckets
from chaos.harness import Row, World, outcome, print_table, stack
from common.version import commit, version
from tests.support.flows import TERMINAL_EVENTS
from tests.support.worker import ROOT, Worker

__all__ = ["Sample", "soak", "steps_in_interval", "trend"]

log = logging.getLogger("chaos.soak")

CYCLE = ("kill a worker", "restart Kafka", "restart Pulsar", "PostgreSQL down 30 s")


@dataclass
class Sample:
    t_s: float  # since the load began
    rss_mib: float
    fds: int
    rocksdb_mib: float
    step_p99_ms: float | None  # None: no step in the interval, or no worker answered /metrics;
    # the histogram's top bound (10 s) means at least that
    lag: int
    sagas_live: int
    ended: int  # sagas ended so far (their terminal notice seen): its slope is the throughput
    fault: str = ""


def _rss_mib(pid: int) -> float:
    try:
        return rss_mib(pid)
    except (OSError, RuntimeError):  # gone between the listing and the read
        return 0.0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _size_mib(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                continue
    return total / 1024**2


def _processes(w: Worker) -> list[int]:
    if w.proc is None or w.proc.poll() is not None:
        return []
    return [w.proc.pid, *child_pids(w.proc.pid)]


async def _lag(group: str, bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    try:  # both stopped even when a start fails (Kafka down): a client left started retries forever
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        tps = [tp for tp, meta in committed.items() if meta.offset >= 0]
        ends = await consumer.end_offsets(tps) if tps else {}
        return sum(max(0, ends[tp] - committed[tp].offset) for tp in tps)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await admin.close()


async def _steps(workers: list[Worker]) -> dict[int, list[tuple[float, float]]]:
    """Each answering worker's step histogram (cumulative buckets), by its process id."""
    out: dict[int, list[tuple[float, float]]] = {}
    for w in workers:
        if w.proc is None:
            continue
        try:
            status, text = await w.get("/metrics")
            if status == 200:
                out[w.proc.pid] = step_buckets(str(text))
        except Exception:
            continue  # busy or restarting: this interval goes without it
    return out


def steps_in_interval(now: dict[int, list[tuple[float, float]]],
                      before: dict[int, list[tuple[float, float]]]) -> list[tuple[float, float]] | None:
    """The steps taken between two scrapes, summed over the workers: each worker's buckets
    minus its own previous ones (a new process, a restarted one, counts from zero); a worker
    that did not answer now adds nothing. None when no worker answered."""
    if not now:
        return None
    total: dict[float, float] = {}
    for pid, buckets in now.items():
        prior = dict(before.get(pid, []))
        for le, n in buckets:
            total[le] = total.get(le, 0.0) + max(0.0, n - prior.get(le, 0.0))
    return sorted(total.items())


#: What one ended saga may leave in RocksDB for good: its tombstone (ids, end status, no
#: personal data: ~450 bytes of JSON) and its partner-index entry, before compression. The
#: README's "Retention": tombstones are kept, so that no saga id is reused; all else leaves.
TOMBSTONE_BYTES = 1024


def trend(samples: list[Sample], first_cycle_end_s: float) -> dict[str, Any]:
    """After the first cycle: the last quarter's median against the second quarter's, per
    measure that must not grow (RSS, descriptors, RocksDB size). RocksDB may grow by
    TOMBSTONE_BYTES per saga ended in between (the tombstones kept for good), no more."""
    after = [s for s in samples if s.t_s >= first_cycle_end_s]
    out: dict[str, Any] = {}
    if len(after) < 8:
        return {"verdict": "too short to tell: fewer than 8 samples after the first cycle"}
    q = len(after) // 4
    second, last = after[q:2 * q], after[-q:]
    ok = True
    ended_between = statistics.median(s.ended for s in last) - statistics.median(s.ended for s in second)
    tombstones_mib = max(0.0, ended_between) * TOMBSTONE_BYTES / 1024**2
    for name, slack, allowed in (("rss_mib", 5.0, 0.0), ("fds", 5.0, 0.0),
                                 ("rocksdb_mib", 5.0, tombstones_mib)):
        a = statistics.median(getattr(s, name) for s in second)
        b = statistics.median(getattr(s, name) for s in last)
        grew = b > max(a * 1.10, a + slack) + allowed
        ok = ok and not grew
        out[name] = {"second_quarter_median": round(a, 1), "last_quarter_median": round(b, 1), "grew": grew}
        if allowed:
            out[name]["tombstones_allowed_mib"] = round(allowed, 1)
    out["verdict"] = "no trend up" if ok else "TREND UP"
    return out


def _charts(samples: list[Sample], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    faults = [(s.t_s / 60, s.fault) for s in samples if s.fault]
    for name, label in (("rss_mib", "RSS, both workers and their children (MiB)"),
                        ("fds", "open file descriptors, both workers and their children"),
                        ("rocksdb_mib", "RocksDB and index size, both data directories (MiB)"),
                        ("step_p99_ms", "step p99 over the interval (ms, histogram bucket)"),
                        ("lag", "consumer group lag (records)"), ("sagas_live", "sagas live")):
        fig, ax = plt.subplots(figsize=(9, 3.2))
        xs = [s.t_s / 60 for s in samples if getattr(s, name) is not None]
        ys = [getattr(s, name) for s in samples if getattr(s, name) is not None]
        ax.plot(xs, ys, lw=1)
        for x, what in faults:
            ax.axvline(x, color="red", lw=0.6, alpha=0.5)
            ax.text(x, ax.get_ylim()[1], what, rotation=90, fontsize=6, va="top", color="red")
        ax.set_xlabel("minutes")
        ax.set_title(label, fontsize=9)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        drawn.append(path)
    return drawn


async def soak(rate: float, seconds: float, fault_every_s: float, sample_s: float, out: Path,
               pg_outage_s: float = 30.0) -> tuple[Row, list[Sample], dict[str, Any]]:
    # Step timeouts that outlast a broker's restart (as the harness's outage scenarios do): a
    # saga that gives up a step because Pulsar was restarting ends compensated, rightly, but
    # not as the participants' choices say.
    # Finished sagas leave the live tables after 2 minutes (SAGA_RETENTION_S), so that the
    # state reaches its steady size within the first cycle: the trend after it is the
    # tombstones', and any leak's. Every step waits 2 minutes for its reply (the harness's
    # 5 s is for its short scenarios): a reply held up by a fault's backlog is late, not
    # missing, and the undo steps' 5 s gave up on replies on their way (compensation_failed).
    world = World(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "90", "SAGA_REPLY_TIMEOUT_S": "120",
                       "SAGA_RETENTION_S": "120"})
    async with world as w:
        assert w.lifecycle is not None
        begin = time.monotonic()
        load = asyncio.ensure_future(w.load(rate, seconds))
        samples: list[Sample] = []
        next_fault, n_fault = fault_every_s, 0
        pending_fault = ""
        last_steps = await _steps(w.workers)
        faulting: asyncio.Future[Any] | None = None
        seen, ended = 0, set()  # the lifecycle notices read so far, and the sagas they ended

        async def fault(kind: str) -> None:
            if kind == "kill a worker":
                victim = w.workers[n_fault % len(w.workers)]
                victim.kill(signal.SIGKILL)
                victim.start()  # on its data directory, as a pod restarts
                await victim.wait_ready(timeout=300)
            elif kind.startswith("restart "):
                component = kind.split()[1].lower()
                await asyncio.to_thread(stack, "down", component)
                await asyncio.to_thread(stack, "up", component)
            else:
                await asyncio.to_thread(stack, "down", "postgres")
                await asyncio.sleep(pg_outage_s)
                await asyncio.to_thread(stack, "up", "postgres")

        while not load.done() or (faulting is not None and not faulting.done()):
            await asyncio.sleep(sample_s)
            t = time.monotonic() - begin
            if (fault_every_s > 0 and t >= next_fault and t < seconds - fault_every_s / 2
                    and (faulting is None or faulting.done())):
                kind = CYCLE[n_fault % len(CYCLE)]
                log.warning("soak: %s at %.0f s", kind, t)
                faulting = asyncio.ensure_future(fault(kind))
                pending_fault, n_fault, next_fault = kind, n_fault + 1, next_fault + fault_every_s
            pids = [p for wk in w.workers for p in _processes(wk)]
            steps = await _steps(w.workers)
            delta = steps_in_interval(steps, last_steps)
            p99 = None
            if delta and delta[-1][1] > 0:  # past the top bucket: at least its bound, charted so
                top = max(le for le, _ in delta if le != float("inf"))
                p99 = min(bucket_quantile(delta, 0.99), top) * 1000
            last_steps = {**last_steps, **steps}
            try:
                lag = await _lag(w.names.app_id, w.kafka_bootstrap)
            except Exception:
                lag = -1  # Kafka down for the fault
            notices = w.lifecycle.messages[seen:]
            seen += len(notices)
            for m in notices:
                ev = m.json()
                if ev.get("type") in TERMINAL_EVENTS:
                    ended.add(ev.get("sagaid"))
            samples.append(Sample(t_s=round(t, 1), rss_mib=round(sum(_rss_mib(p) for p in pids), 1),
                                  fds=sum(_fds(p) for p in pids),
                                  rocksdb_mib=round(sum(_size_mib(wk.datadir) for wk in w.workers), 1),
                                  step_p99_ms=p99, lag=lag,
                                  sagas_live=len(w.started) - len(ended & w.started.keys()),
                                  ended=len(ended),
                                  fault=pending_fault))
            last = samples[-1]
            p99_text = "-" if last.step_p99_ms is None else f"{last.step_p99_ms:g}"
            print(f"soak {last.t_s:7.1f} s  started {len(w.started):>8,}  ended {last.ended:>8,}  "
                  f"live {last.sagas_live:>7,}  lag {last.lag:>8,}  step p99 {p99_text:>6} ms  "
                  f"RSS {last.rss_mib:7.1f} MiB  RocksDB {last.rocksdb_mib:6.1f} MiB  {last.fault}",
                  flush=True)
            pending_fault = ""
            if faulting is not None and faulting.done() and faulting.exception() is not None:
                raise RuntimeError(f"a fault failed: {faulting.exception()!r}")
        await w.settle(300)
        row = outcome(f"soak {seconds / 60:.0f} min at {rate:g} sagas/s, {n_fault} faults", w.started,
                      w.lifecycle)
        w.keep = not row.clean
    verdict = trend(samples, fault_every_s * (len(CYCLE) + 1))
    _write(out, samples, row, verdict, rate=rate, seconds=seconds, fault_every_s=fault_every_s,
           faults=n_fault, ended_per_s=throughput(samples, seconds))
    return row, samples, verdict


def throughput(samples: list[Sample], seconds: float) -> float | None:
    """Sagas ended per second over the load's second half (the slope of `ended`): with a rate
    above what the workers keep up with, and no faults, the sustained maximum."""
    during = [s for s in samples if seconds / 2 <= s.t_s <= seconds]
    if len(during) < 2 or during[-1].t_s <= during[0].t_s:
        return None
    return round((during[-1].ended - during[0].ended) / (during[-1].t_s - during[0].t_s), 1)


def _write(out: Path, samples: list[Sample], row: Row, verdict: dict[str, Any], **run: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(samples[0]))) if samples else None
        if writer is not None:
            writer.writeheader()
            writer.writerows(asdict(s) for s in samples)
    charts = _charts(samples, out) if samples else []
    summary = {"version": version(), "commit": commit(), **run, "cycle": CYCLE,
               "table": {k: v for k, v in asdict(row).items() if k != "odd"}, "odd": row.odd,
               "trend": verdict, "charts": [p.name for p in charts]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=40.0,
                   help="sagas started per second (default 40, the fault harness's rate; half of what two "
                        "workers sustain here is ~138: measure yours with --fault-every-s 0 and a rate "
                        "above it, bench/results/soak-2026-12-04-capacity-*)")
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--fault-every-s", type=float, default=240.0,
                   help="seconds between faults; 0: none (with a rate above the maximum, the "
                        "summary's ended_per_s is the sustained maximum)")
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out = args.out or ROOT / "bench" / "results" / f"soak-{time.strftime('%Y-%m-%d')}"
    try:
        row, samples, verdict = asyncio.run(soak(args.rate, args.seconds, args.fault_every_s, args.sample_s,
                                                 out))
    except Exception as exc:
        logging.exception("the soak failed")
        row, verdict = Row("soak", 0, 0, 0, 0, 0, note=f"FAILED: {exc!r}"[:500]), {"verdict": "failed"}
        samples = []
    print()
    print_table([row])
    print(f"trend after the first cycle: {json.dumps(verdict)}")
    print(f"sagas ended per second over the load's second half: {throughput(samples, args.seconds)}")
    print(f"samples, charts and summary: {out}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if row.clean and verdict.get("verdict") == "no trend up" else 1)


if __name__ == "__main__":
    main()
