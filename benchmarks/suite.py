"""The whole benchmark suite (make bench): every benchmark, one after the other, each in a
process of its own with `--json`, then one results file and its charts.

    uv run python -m benchmarks.suite [--out bench/results]        (make bench; QUICK=1 for a smoke run)

1. deadline_tick    the deadline timer's tick with TICK_PENDING (100,000) pending deadlines
2. agent_rate       the saga agent against a pass-through Faust agent, AGENT_EVENTS (20,000) each
3. saga_throughput  the pass-through agent (PT_EVENTS, 20,000), then one worker: SAGAS (3,000)
                    started at once (the maximum), then paced loads of PACED_SECONDS (20) each at
                    OFFERED (0.25,0.75,1,1.25,1.5) times that maximum, or at RATES (sagas/s, e.g.
                    RATES=40,80,160) when given, and STEP_SECONDS (30) at half the maximum for
                    the step-latency CDF; WARMUP (500) sagas first; ECHO=1: participants echo sagaid
4. timeout_burst    TIMEOUT_SAGAS (500) silent sagas timing out together
5. retention        `python -m benchmarks.retention --sagas RETENTION_SAGAS (1,000,000) --json`
                    (its last stdout line is a JSON object): worker RSS and recovery time with
                    that many finished sagas stored, and after retention removed them. Its chart
                    reads {"points": [{"stored_sagas": N, "rss_mib": X}, ...]}
                    (benchmarks/charts.py, retention_points). RETENTION_TIMEOUT_S (1800).

Writes <out>/<UTC date>.json (every figure, each benchmark's printed output, the git commit and
whether the tree had uncommitted changes, the machine: nproc, memory, CPU model) and the PNG
charts in <out>/<UTC date>/ (benchmarks/charts.py). A run on the same day replaces that day's
files; QUICK=1 (small counts, a few minutes) writes <date>-quick instead. Exits non-zero when a
benchmark failed (its error is in the results file too). BENCH_TIMEOUT_S (1800) bounds each one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.report import ROOT, dumps, git_info, machine

QUICK = {"TICK_PENDING": "10000", "AGENT_EVENTS": "2000", "PT_EVENTS": "2000", "SAGAS": "300",
         "WARMUP": "100", "PACED_SECONDS": "5", "STEP_SECONDS": "8", "TIMEOUT_SAGAS": "100",
         "RETENTION_SAGAS": "20000"}
DEFAULTS = {"TICK_PENDING": "100000", "AGENT_EVENTS": "20000", "PT_EVENTS": "20000", "SAGAS": "3000",
            "WARMUP": "500", "OFFERED": "0.25,0.75,1,1.25,1.5", "RATES": "", "PACED_SECONDS": "20",
            "STEP_SECONDS": "30", "TIMEOUT_SAGAS": "500", "ECHO": "0", "BENCH_TIMEOUT_S": "1800",
            "RETENTION_SAGAS": "1000000", "RETENTION_TIMEOUT_S": "1800"}

TARGETS = {
    "completed_sagas_per_passthrough_event": (">=", 0.15),
    "saga_agent_to_passthrough_ratio": (">=", 0.5),
    "step_p99_ms_at_half_max": ("<=", 100.0),
    "timeout_lag_p99_s": ("<=", 1.0),
}


def _settings(quick: bool) -> dict[str, str]:
    base = {**DEFAULTS, **(QUICK if quick else {})}
    return {k: os.environ.get(k) or v for k, v in base.items()}


def _run(name: str, argv: list[str], timeout_s: float) -> dict[str, Any]:
    """Run one benchmark, echoing its output as it comes; collect output, status, wall time."""
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    timed_out = threading.Event()

    def _stop() -> None:  # SIGINT first: the benchmark's finally blocks stop its worker
        timed_out.set()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

    timer = threading.Timer(timeout_s, _stop)
    timer.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        proc.wait()
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    entry: dict[str, Any] = {"command": f"python -m {' '.join(argv)}", "wall_s": round(wall, 1),
                             "exit_code": proc.returncode, "output": "".join(lines)}
    if timed_out.is_set():
        entry["error"] = f"stopped after {timeout_s:.0f}s (BENCH_TIMEOUT_S)"
    elif proc.returncode != 0:
        entry["error"] = f"exit code {proc.returncode}; see output"
    print(f"=== {name}: {'ok' if 'error' not in entry else entry['error']} in {wall:.0f}s", flush=True)
    return entry


def _with_json(name: str, argv: list[str], timeout_s: float, folder: Path) -> dict[str, Any]:
    path = folder / f"{name}.json"
    entry = _run(name, [*argv, "--json", str(path)], timeout_s)
    if "error" not in entry:
        try:
            entry["figures"] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            entry["error"] = f"no figures in {path.name}: {exc}"
    entry["ok"] = "error" not in entry
    return entry


def _retention(sagas: str, timeout_s: float) -> dict[str, Any]:
    if not (ROOT / "benchmarks" / "retention.py").exists():
        why = "benchmarks/retention.py does not exist (yet): no RSS-against-stored-sagas figures"
        print(f"\n{'!' * 78}\n!!! retention: MISSING: {why}\n{'!' * 78}", flush=True)
        return {"ok": False, "missing": True, "why": why}
    entry = _run("retention", ["benchmarks.retention", "--sagas", sagas, "--json"], timeout_s)
    if "error" not in entry:
        for line in reversed(entry["output"].splitlines()):
            try:
                figures = json.loads(line)
            except ValueError:
                continue
            if isinstance(figures, dict):
                entry["figures"] = figures
                break
        else:
            entry["error"] = "no JSON object line in its output"
    entry["ok"] = "error" not in entry
    if not entry["ok"]:
        entry["why"] = entry["error"]
        print(f"\n!!! retention: FAILED: {entry['error']}", flush=True)
    return entry


def _summary(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def fig(name: str) -> dict[str, Any]:
        return benchmarks.get(name, {}).get("figures") or {}

    s: dict[str, Any] = {}
    tick = {c["due"]: c["median_ms"] for c in fig("deadline_tick").get("cases", [])}
    if tick:
        s["deadline_tick_median_ms"] = {str(k): v for k, v in tick.items()}
    if (a := fig("agent_rate")):
        s["saga_agent_events_per_s"] = a["saga_agent_events_per_s"]
        s["pass_through_events_per_s (agent_rate)"] = a["pass_through_events_per_s"]
        s["saga_agent_to_passthrough_ratio"] = a["ratio"]
    if (e := fig("saga_throughput")):
        s["max_completed_sagas_per_s"] = e.get("max_completed_per_s")
        s["pass_through_events_per_s (saga_throughput)"] = (e.get("passthrough") or {}).get("events_per_s")
        s["completed_sagas_per_passthrough_event"] = e.get("completed_sagas_per_passthrough_event")
        if (st := e.get("step_latency")):
            s["step_latency_rate_per_s"] = st["rate_per_s"]
            s["step_p50_ms_at_half_max"] = st["p50_le_ms"]
            s["step_p99_ms_at_half_max"] = st["p99_le_ms"]
    if (t := fig("timeout_burst")):
        s["timeout_lag_p50_s"] = t["lag_s"]["p50"]
        s["timeout_lag_p99_s"] = t["lag_s"]["p99"]
        s["timeout_lag_max_s"] = t["lag_s"]["max"]
    s["retention"] = "measured" if benchmarks.get("retention", {}).get("ok") else \
        "MISSING: " + str(benchmarks.get("retention", {}).get("why", "not run"))
    s["targets"] = {}
    for key, (op, bound) in TARGETS.items():
        value = s.get(key)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        s["targets"][key] = {"target": f"{op} {bound:g}", "value": value, "met": met}
    return s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path,
                   default=Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results"))
    p.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1",
                   help="small counts (QUICK=1): proves the harness, the figures mean little")
    p.add_argument("--only", default=os.environ.get("ONLY", ""),
                   help="comma-separated subset: deadline_tick,agent_rate,saga_throughput,timeout_burst,"
                   "retention")
    args = p.parse_args()
    cfg = _settings(args.quick)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    started = datetime.now(UTC)
    load_before = os.getloadavg()  # other work on the machine skews every figure: recorded
    date = started.strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    t0 = time.monotonic()
    timeout = float(cfg["BENCH_TIMEOUT_S"])
    paced = ["--rates", cfg["RATES"]] if cfg["RATES"] else ["--offered", cfg["OFFERED"]]
    plan: dict[str, list[str]] = {
        "deadline_tick": ["benchmarks.deadline_tick", "--pending", cfg["TICK_PENDING"]],
        "agent_rate": ["benchmarks.agent_rate", "--events", cfg["AGENT_EVENTS"]],
        "saga_throughput": ["benchmarks.saga_throughput", "--sagas", cfg["SAGAS"], "--warmup", cfg["WARMUP"],
                            "--passthrough-events", cfg["PT_EVENTS"], "--step-latency",
                            "--step-seconds", cfg["STEP_SECONDS"], "--paced-seconds", cfg["PACED_SECONDS"],
                            *paced, *(["--echo-sagaid"] if cfg["ECHO"] == "1" else [])],
        "timeout_burst": ["benchmarks.timeout_burst", "--sagas", cfg["TIMEOUT_SAGAS"]],
    }
    print(f"benchmark suite{' (QUICK)' if args.quick else ''}, {started:%Y-%m-%d %H:%M} UTC; settings: "
          + " ".join(f"{k}={v}" for k, v in cfg.items() if v), flush=True)
    benchmarks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        for name, argv in plan.items():
            if not only or name in only:
                benchmarks[name] = _with_json(name, argv, timeout, Path(tmp))
    if not only or "retention" in only:
        benchmarks["retention"] = _retention(cfg["RETENTION_SAGAS"], float(cfg["RETENTION_TIMEOUT_S"]))

    results: dict[str, Any] = {
        "suite": "make bench" + (" QUICK=1" if args.quick else ""), "date": date,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - t0, 1), "git": git_info(), "machine": machine(),
        "load_average_1_5_15min": {"start": [round(x, 2) for x in load_before],
                                   "end": [round(x, 2) for x in os.getloadavg()]},
        "settings": cfg,
        "summary": _summary(benchmarks), "benchmarks": benchmarks,
    }
    from benchmarks.charts import draw_all  # matplotlib only now: a failed import keeps the figures

    charts_dir = args.out / date
    try:
        drawn, skipped = draw_all(results, charts_dir)
    except Exception as exc:
        drawn, skipped = [], {"all": f"{type(exc).__name__}: {exc}"}
    results["charts"] = [str(pth.relative_to(args.out)) for pth in drawn]
    results["charts_not_drawn"] = skipped
    results["wall_s"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"{date}.json"
    out_file.write_text(dumps(results) + "\n")

    print("\n=== summary")
    for key, value in results["summary"].items():
        if key != "targets":
            print(f"  {key}: {_fmt(value)}")
    for key, t in results["summary"]["targets"].items():
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"  target {key} {t['target']}: {_fmt(t['value'])}  {verdict}")
    for pth in drawn:
        print(f"  chart: {pth}")
    for name, why in skipped.items():
        print(f"  chart NOT drawn: {name}: {why}")
    failed = [n for n, b in benchmarks.items() if not b.get("ok") and not b.get("missing")]
    if benchmarks.get("retention", {}).get("missing"):
        print(f"  !!! retention figures MISSING: {benchmarks['retention']['why']}")
    print(f"results: {out_file}  (suite wall time {results['wall_s'] / 60:.1f} min)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


if __name__ == "__main__":
    main()
