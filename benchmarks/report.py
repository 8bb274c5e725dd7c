"""What the benchmarks share: percentiles, the step-latency histogram from a worker's /metrics,
the machine and commit a figure was measured on, and `--json PATH` output for the suite
(benchmarks/suite.py). Every benchmark keeps printing its figures for people; with `--json`
it also writes them, machine-readably, to PATH."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "add_json_arg",
    "bucket_quantile",
    "cdf_points",
    "child_pids",
    "drop_run_leftovers",
    "dumps",
    "git_info",
    "machine",
    "percentile",
    "quantiles",
    "rss_mib",
    "step_buckets",
    "write_json",
]

ROOT = Path(__file__).resolve().parents[1]


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", type=Path, default=None,
                   help="also write the figures as JSON to PATH (the suite reads them)")


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(figures) + "\n")


def dumps(figures: Any) -> str:
    """JSON, indented, with lists of plain numbers kept on one line each (readable diffs)."""
    text = json.dumps(figures, indent=1, allow_nan=False)
    # Only brackets spanning lines are JSON's own: a string never holds a raw newline.
    return re.sub(r"\[\n[-0-9.eE,\snul]*\]", lambda m: " ".join(m.group(0).split()).replace("[ ", "[")
                  .replace(" ]", "]"), text)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank below (as the tests did)."""
    if not ordered:
        raise ValueError("no values")
    return ordered[int(q * (len(ordered) - 1))]


def quantiles(ordered: Sequence[float]) -> list[float]:
    """The 0th..100th percentiles (101 values): enough to draw a CDF, small enough to store."""
    return [percentile(ordered, i / 100) for i in range(101)]


def step_buckets(metrics_text: str, name: str = "saga_step_latency_seconds") -> list[tuple[float, float]]:
    """The cumulative buckets of histogram `name` (upper bound in s, count), in the order
    /metrics lists them; +Inf as float('inf'). Raises when the histogram is missing."""
    out = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not out:
        raise RuntimeError(f"the worker's /metrics has no {name} histogram")
    return out


def bucket_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile: the quantile is <= this bound
    and > the bucket below's (a histogram gives no finer answer)."""
    total = buckets[-1][1]
    if total <= 0:
        raise ValueError("no observations in the histogram")
    return next(le for le, n in buckets if n >= q * total)


def cdf_points(buckets: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(upper bound, share of observations at or below it) for the finite buckets."""
    total = buckets[-1][1]
    return [(le, n / total) for le, n in buckets if le != float("inf")] if total else []


def _run(*cmd: str, strip: bool = True) -> str:
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip() if strip else out


def git_info() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (which files)."""
    status = _run("git", "status", "--porcelain", "--untracked-files=no", strip=False)
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": _run("git", "rev-parse", "HEAD"), "subject": _run("git", "log", "-1", "--format=%s"),
            "dirty": bool(changed), "changed_files": changed}


def machine() -> dict[str, Any]:
    cpu = ""
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": int(_run("nproc") or os.cpu_count() or 0), "cpu_model": cpu or platform.processor(),
            "memory_mib": mem_kib // 1024, "kernel": platform.release(),
            "python": platform.python_version(), "hostname": platform.node(),
            "pulsar": _pulsar_impl()}


def _pulsar_impl() -> str:
    """Which Pulsar broker the local stack runs (stack/stack.sh keeps one pid file per kind)."""
    stack = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))
    if (stack / "pulsar-apache.pid").exists():
        return "apache"
    if (stack / "run" / "pulsar.pid").exists():
        return "lite"
    return "unknown"


async def drop_run_leftovers(app_id: str, bootstrap: str | None = None) -> None:
    """Delete a run's Kafka topics (`<app_id>-*`) and its PostgreSQL snapshot schema, so
    repeated runs do not leave the one-node broker thousands of partitions to look after (as
    the tests' `names` fixture does). Best effort: a failure is printed, not raised."""
    import psycopg

    from tests.support.stack import KAFKA, PG_URL, drop_topics

    try:
        await drop_topics(app_id, bootstrap or KAFKA)
    except Exception as exc:
        print(f"(could not delete the Kafka topics {app_id}-*: {exc!r})")
    try:
        async with await psycopg.AsyncConnection.connect(PG_URL) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{app_id}" CASCADE')
            await conn.commit()
    except Exception as exc:
        print(f"(could not drop the PostgreSQL schema {app_id}: {exc!r})")


async def finish_run(worker: Any, folder: Path, app_id: str, failed: bool) -> None:
    """Stop a benchmark's worker; keep its folder and print its log's tail if the run failed,
    else delete the folder; drop its topics and schema either way."""
    worker.stop()
    if failed:
        print(f"worker log (tail; all of it in {worker.log_path}):\n{worker.log()[-3000:]}",
              file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    await drop_run_leftovers(app_id)


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), MiB. Raises when it has none (it is gone)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def child_pids(pid: int) -> list[int]:
    """The process's direct children (a worker's bridges and mirror)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out
