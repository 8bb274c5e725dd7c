"""PNG charts of a `make bench` results file (matplotlib, Agg backend: no display needed).

    uv run python -m benchmarks.charts bench/results/2026-11-27.json [--out DIR]

Draws, into DIR (default: the results file's name without .json, e.g. bench/results/2026-11-27/):
- throughput.png: completed sagas/s against offered load (the paced loads; the all-at-once
  burst as the maximum), with the pass-through agent's events/s and the target (0.2 completed
  sagas per pass-through event) as reference lines;
- step_latency_cdf.png: at half the maximum rate, the share of steps (bridge receipt -> saga
  agent decision) at or below each histogram bucket, beside the sagas' own latency CDF;
- timeout_lag.png: histogram of the compensation lag (CancelAlliance) after the last attempt's deadline;
- rss_vs_sagas.png: the worker's RSS against stored sagas, when the suite has retention figures.
A chart whose figures are missing is skipped with the reason (returned, and printed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["draw_all", "retention_points"]


def _figures(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = results.get("benchmarks", {}).get(name) or {}
    return entry.get("figures") if entry.get("ok") else None


def _subtitle(results: dict[str, Any]) -> str:
    m, g = results.get("machine", {}), results.get("git", {})
    dirty = " (+ uncommitted changes)" if g.get("dirty") else ""
    return (f"{results.get('date', '')}, commit {g.get('commit', '?')[:10]}{dirty}; "
            f"{m.get('nproc', '?')} cores {m.get('cpu_model', '')}, {m.get('memory_mib', 0) / 1024:.0f} GiB")


def throughput(results: dict[str, Any], out: Path) -> Path:
    f = _figures(results, "saga_throughput")
    if not f:
        raise LookupError("no saga_throughput figures")
    loads = f["loads"]
    paced = sorted((ld for ld in loads if ld["offered_per_s"] is not None),
                   key=lambda ld: ld["offered_per_s"])
    burst = [ld for ld in loads if ld["offered_per_s"] is None]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if paced:
        xs = [ld["offered_per_s"] for ld in paced]
        ax.plot(xs, [ld["completed_per_s"] for ld in paced], "o-", color="C0",
                label="completed sagas/s (paced)")
        for ld in paced:
            if ld["role"] == "step-latency":
                ax.annotate("step-latency load", (ld["offered_per_s"], ld["completed_per_s"]),
                            textcoords="offset points", xytext=(6, -14), fontsize=8)
        low, top = min(xs) * 0.8, max(xs) * 1.1
        diagonal = [low + (top - low) * i / 100 for i in range(101)]  # a curve on the log axis
        ax.plot(diagonal, diagonal, ":", color="gray", label="completed = offered")
    for ld in burst:
        ax.axhline(ld["completed_per_s"], color="C1", ls="--",
                   label=f"all at once ({ld['sagas']:,} sagas): {ld['completed_per_s']:,.0f}/s")
    pt = (f.get("passthrough") or {}).get("events_per_s")
    if pt:
        ax.axhline(pt, color="C2", ls="-", lw=2, label=f"pass-through Faust agent: {pt:,.0f} events/s")
        target = f.get("target_completed_sagas_per_passthrough_event", 0.2)
        ax.axhline(pt * target, color="C3", ls="-.",
                   label=f"target: {target:g} completed sagas per pass-through event ({pt * target:,.0f}/s)")
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_xlabel("offered load (sagas started per second)")
    ax.set_ylabel("completed sagas/s (log scale); pass-through: events/s")
    echo = "participants echo sagaid" if f.get("echo_sagaid") else "participants do not echo sagaid"
    ax.set_title(f"End-to-end throughput against offered load (one worker, {echo})\n{_subtitle(results)}",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    path = out / "throughput.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def step_latency_cdf(results: dict[str, Any], out: Path) -> Path:
    f = _figures(results, "saga_throughput")
    load = next((ld for ld in (f or {}).get("loads", []) if ld["role"] == "step-latency"), None)
    if load is None or not load["steps"]:
        raise LookupError("no step-latency load in the saga_throughput figures")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
    total = load["steps"]
    finite = [(le, n / total) for le, n in load["step_buckets"] if le != "+Inf"]
    xs = [le * 1000 for le, _ in finite]
    a.step(xs, [s for _, s in finite], where="post", color="C0")
    a.plot(xs, [s for _, s in finite], "o", color="C0", ms=4,
           label="share of steps <= bucket bound\n(the line: a lower bound between bounds)")
    a.axvline(100, color="C3", ls="-.", label="target: p99 <= 100 ms")
    a.axhline(0.99, color="gray", ls=":", label="p99")
    a.axhline(0.5, color="gray", ls="--", lw=0.8, label="p50")
    a.set_xscale("log")
    a.set_ylim(0, 1.02)
    a.set_xlabel("step latency, ms (histogram bucket bounds, log scale)")
    a.set_ylabel("share of steps")
    a.set_title(f"Step latency (bridge receipt -> decision), {total:.0f} steps\n"
                f"p50 <= {load['step_p50_le_ms']} ms, p99 <= {load['step_p99_le_ms']} ms", fontsize=9)
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8, loc="lower right")
    pct = load["saga_latency_ms_percentiles"]
    b.plot(pct, [i / 100 for i in range(101)], color="C1")
    b.axhline(0.99, color="gray", ls=":")
    b.axhline(0.5, color="gray", ls="--", lw=0.8)
    b.set_xlabel("saga latency, ms (PartnerCreated published -> SagaCompleted received)")
    b.set_ylabel("share of sagas")
    b.set_ylim(0, 1.02)
    b.set_title(f"Saga latency, {load['sagas']} sagas: p50 {load['saga_latency_ms']['p50']:.0f} ms, "
                f"p99 {load['saga_latency_ms']['p99']:.0f} ms", fontsize=9)
    b.grid(True, alpha=0.3)
    fig.suptitle(f"At a steady {load['offered_per_s']:.1f} sagas/s (half the measured maximum)\n"
                 f"{_subtitle(results)}", fontsize=9)
    path = out / "step_latency_cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeout_lag(results: dict[str, Any], out: Path) -> Path:
    f = _figures(results, "timeout_burst")
    if not f:
        raise LookupError("no timeout_burst figures")
    lags = f["lags_s"]
    lag = f["lag_s"]
    fig, ax = plt.subplots(figsize=(8, 5))
    top = max(max(lags), f.get("target_p99_s", 1.0)) * 1.05
    ax.hist(lags, bins=[i * 0.025 for i in range(int(top / 0.025) + 2)], color="C0", alpha=0.8)
    ax.axvline(lag["p50"], color="gray", ls="--", label=f"p50 {lag['p50']:.3f} s")
    ax.axvline(lag["p99"], color="C1", ls="-", label=f"p99 {lag['p99']:.3f} s")
    target = f.get("target_p99_s", 1.0)
    ax.axvline(target, color="C3", ls="-.", label=f"target: p99 <= {target:g} s")
    ax.set_xlabel("CancelAlliance received - last attempt's deadline (s), 25 ms bins")
    ax.set_ylabel("sagas")
    ax.set_title(f"Timeout to compensation: {f['sagas']} silent sagas, timeout {f['timeout_s']:g} s, "
                 f"{f['max_attempts']} attempts, last deadlines spread over "
                 f"{f['last_deadlines_spread_s']:.2f} s"
                 f"\n{_subtitle(results)}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "timeout_lag.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_RSS_UNITS = {"rss_bytes": 1 / 2**20, "rss_kib": 1 / 1024, "rss_kb": 1 / 1024, "rss_mib": 1.0, "rss_mb": 1.0}


def retention_points(figures: Any) -> list[tuple[float, float]]:
    """(stored sagas, RSS MiB) from the retention benchmark's JSON. The expected shape is
    {"points": [{"stored_sagas": N, "rss_mib": X}, ...]} (rss_bytes or rss_kib also do; the
    list may also be called "series" or "samples", or be the whole document)."""
    items = figures
    if isinstance(figures, dict):
        items = next((figures[k] for k in ("points", "series", "samples")
                      if isinstance(figures.get(k), list)), None)
    if not isinstance(items, list) or not items:
        raise ValueError('no list of points (expected {"points": [{"stored_sagas": N, "rss_mib": X}, ...]})')
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"a point is not an object: {item!r}")
        sagas = next((v for k, v in item.items() if "saga" in k), None)
        unit = next((k for k in _RSS_UNITS if k in item), None)
        if sagas is None or unit is None:
            raise ValueError("a point lacks a stored-sagas count or an rss_mib/rss_bytes/rss_kib value: "
                             f"{item!r}")
        out.append((float(sagas), float(item[unit]) * _RSS_UNITS[unit]))
    return sorted(out)


def rss_vs_sagas(results: dict[str, Any], out: Path) -> Path:
    f = _figures(results, "retention")
    if not f:
        why = (results.get("benchmarks", {}).get("retention") or {}).get("why", "no retention figures")
        raise LookupError(why)
    points = retention_points(f)
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="C0")
    ax.set_xlabel("sagas stored by the worker")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Worker memory against stored sagas (benchmarks/retention.py)\n{_subtitle(results)}",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    path = out / "rss_vs_sagas.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CHARTS = (throughput, step_latency_cdf, timeout_lag, rss_vs_sagas)


def draw_all(results: dict[str, Any], out: Path) -> tuple[list[Path], dict[str, str]]:
    """Every chart the results allow; returns (drawn, {chart: why it was not drawn})."""
    out.mkdir(parents=True, exist_ok=True)
    drawn, skipped = [], {}
    for chart in CHARTS:
        try:
            drawn.append(chart(results, out))
        except (LookupError, ValueError, KeyError, TypeError) as exc:
            skipped[f"{chart.__name__}.png"] = f"{type(exc).__name__}: {exc}"
            plt.close("all")
    return drawn, skipped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    drawn, skipped = draw_all(json.loads(args.results.read_text()), args.out or args.results.with_suffix(""))
    for path in drawn:
        print(f"chart: {path}")
    for name, why in skipped.items():
        print(f"chart NOT drawn: {name}: {why}")


if __name__ == "__main__":
    main()
