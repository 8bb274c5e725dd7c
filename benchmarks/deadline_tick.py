"""Benchmark: the cost of one deadline-timer tick against the pending-saga count.

Fills a RocksDB partition database exactly as Faust's rocksdb store opens it (rocksdict, raw
mode) with PENDING deadlines due in the future, plus DUE deadlines already due, then times
`tables.deadline_index.due_in_db` (the scan one tick runs per partition).

    uv run python -m benchmarks.deadline_tick [--pending 100000] [--repeat 20] [--json PATH]
    (make bench-tick; make bench runs it in the suite)

Prints, for 0, 100 and 10,000 due deadlines, the median and p95 time of a tick.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from rocksdict import Options, Rdict

from benchmarks.report import add_json_arg, write_json
from domain.state import Deadline
from tables.deadline_index import deadline_event_fields, due_in_db, index_key


def _fill(db: Rdict, count: int, due_from: float, spread_s: float) -> None:
    for i in range(count):
        saga_id = str(uuid.uuid4())
        d = Deadline(due_at=due_from + spread_s * i / max(count, 1), step="create_alliance",
                     phase="forward", kind="reply", attempt=1)
        db[index_key(saga_id, d)] = deadline_event_fields(saga_id, d)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pending", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=20)
    add_json_arg(p)
    args = p.parse_args()
    cases = []
    now = time.time()
    print(f"deadline tick benchmark: {args.pending:,} pending (not yet due) deadlines, "
          f"{args.repeat} ticks per case")
    print(f"{'due':>8} {'median ms':>10} {'p95 ms':>8} {'due found':>10}")
    for due in (0, 100, 10_000):
        folder = Path(tempfile.mkdtemp(prefix="deadline-bench-"))
        try:
            db = Rdict(str(folder / "db"), Options(raw_mode=True))
            _fill(db, args.pending, now + 60, 3600)  # due within the next hour
            _fill(db, due, now - 30, 29)  # due during the last 30 s
            db.flush()
            times, found = [], 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                found = sum(1 for _ in due_in_db(db, now))
                times.append((time.perf_counter() - t0) * 1000)
            assert found == due, (found, due)
            times.sort()
            cases.append({"due": due, "median_ms": statistics.median(times),
                          "p95_ms": times[int(0.95 * (len(times) - 1))]})
            print(f"{due:>8,} {statistics.median(times):>10.3f} "
                  f"{times[int(0.95 * (len(times) - 1))]:>8.3f} {found:>10,}")
            db.close()
        finally:
            shutil.rmtree(folder)
    write_json(args.json, {"benchmark": "deadline_tick", "pending": args.pending, "repeat": args.repeat,
                           "cases": cases})


if __name__ == "__main__":
    main()
