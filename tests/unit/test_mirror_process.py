"""The snapshot mirror's child process, with a stand-in command: its reports become the
worker's metrics, counters carry over a restart, and a line that is not a report is ignored."""

from __future__ import annotations

import asyncio
import json
import sys

from orchestrator.mirror_process import MirrorProcess
from runtime.metrics import Metrics

REPORTS = [
    {"counters": {"snapshots_written_total": 3}, "gauges": {"snapshot_lag_records": 7}, "migrated": True},
    {"counters": {"snapshots_written_total": 5}, "gauges": {"snapshot_lag_records": 0}, "migrated": True},
]
CHILD = "; ".join(["import sys", "print('not a report')",
                   *(f"print({json.dumps(json.dumps(r))})" for r in REPORTS), "sys.exit(3)"])


async def test_reports_become_metrics_and_counters_survive_a_restart() -> None:
    metrics = Metrics()
    seen: list[dict[str, object]] = []
    mirror = MirrorProcess(metrics, command=[sys.executable, "-c", CHILD], on_report=seen.append)
    task = asyncio.create_task(mirror.run())
    try:
        for _ in range(600):  # two runs of the child: its 2 reports, twice
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(seen) >= 4
    assert mirror.migrated
    # The second child started from 0: the first one's last count (5) is kept beneath it.
    assert metrics.counters[("snapshots_written_total", ())] == 10
    assert metrics.counters[("snapshot_mirror_restarts_total", ())] >= 1
    assert metrics.gauges["snapshot_lag_records"] == 0
