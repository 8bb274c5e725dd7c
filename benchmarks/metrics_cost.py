"""What counting costs the saga agent: an event's metric updates (three: an event counter, a
command counter, the step-latency histogram) through this project's in-process counters
(runtime/metrics.py, exposed by prometheus_client at scrape time) and through
prometheus_client's own Counter and Histogram objects. Prints µs per event for each.

    uv run python -m benchmarks.metrics_cost [--events 200000]
"""

from __future__ import annotations

import argparse
import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from runtime.metrics import Metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    n = p.parse_args().events
    ours = Metrics()
    t0 = time.perf_counter()
    for _ in range(n):
        ours.inc("events_total", type="PartnerCreated", outcome="applied")
        ours.inc("commands_total", type="CreateAlliance")
        ours.observe_step(0.01)
    in_process = (time.perf_counter() - t0) / n * 1e6
    reg = CollectorRegistry()
    events = Counter("saga_events", "events", ["type", "outcome"], registry=reg)
    commands = Counter("saga_commands", "commands", ["type"], registry=reg)
    step = Histogram("saga_step_latency_seconds", "step", registry=reg)
    t0 = time.perf_counter()
    for _ in range(n):
        events.labels(type="PartnerCreated", outcome="applied").inc()
        commands.labels(type="CreateAlliance").inc()
        step.observe(0.01)
    client = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    text = ours.render()
    render_ms = (time.perf_counter() - t0) * 1e3
    print(f"in-process counters:          {in_process:.2f} µs per event ({n} events)")
    print(f"prometheus_client objects:    {client:.2f} µs per event")
    print(f"one scrape (render):          {render_ms:.2f} ms, {len(text)} bytes")


if __name__ == "__main__":
    main()
