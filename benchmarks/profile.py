"""Where a worker's CPU goes: py-spy samples of the whole process tree, sorted into the parts of
the design (make bench-agent PROFILE=1).

`record(pid, seconds, out)` runs `py-spy record --subprocesses --threads --format raw` on a
process (every thread, and child processes such as the snapshot mirror); `summarize(path)`
reads the collapsed stacks it wrote and gives each part's share of the samples. A sample goes
to the first part (in `PARTS` order) with a frame matching it: the design's own code first,
then the libraries under it, so that a RocksDB put under the table writer counts as the
writer's. Idle samples are not recorded (py-spy's default), so the shares are of CPU time;
multiplied by the CPU per event of the same run they give milliseconds per event.

    uv run python -m benchmarks.profile bench/results/profile-<name>.txt   (a table of a recording)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["PARTS", "record", "summarize", "table"]

#: (part, pattern of a frame): the first part with a matching frame takes the sample.
PARTS: tuple[tuple[str, str], ...] = (
    ("snapshot mirror (child process)", r"snapshots/|psycopg"),
    ("outbox bridge: Pulsar sends, HTTP calls",
     r"bridges/outbox\.py|bridges/pulsar_outbound\.py|bridges/alpes\.py"),
    ("Pulsar client (C++ threads, callbacks)", r"pulsar/|_pulsar|bridges/pulsar_client\.py"),
    ("inbound bridge", r"bridges/pulsar_inbound\.py"),
    ("table writer: changelog/outbox produce, RocksDB WriteBatch", r"tables/writer\.py"),
    ("saga: decode, decide, encode (domain, pydantic)", r"agents/partner_saga\.py|domain/|pydantic"),
    ("partner index agent", r"agents/partner_routing\.py"),
    ("deadline and retention timers, index", r"agents/deadlines\.py|agents/retention\.py|deadline_index\.py"),
    ("Faust table: per-record set, changelog, persisted offset", r"faust/tables/|faust/stores/"),
    ("Faust stream and conductor, per record",
     r"faust/streams\.py|faust/channels\.py|faust/transport/conductor\.py|faust/agents/"),
    ("Faust consumer: fetch, commit, acks", r"faust/transport/consumer\.py|faust/transport/drivers|"
                                           r"runtime/faust_patches\.py"),
    ("aiokafka producer and consumer (Python)", r"aiokafka/"),
    ("web server, metrics", r"aiohttp|prometheus_client|orchestrator/web|orchestrator/auth|runtime/metrics"),
    ("start-up (imports, topic creation, preflight)", r"SourceLoader|_find_and_load|orchestrator/preflight|"
                                                      r"runtime/topics"),
    ("event loop, tasks, the rest of the main thread", r"mode/|asyncio/|uvloop"),
)
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in PARTS)
OTHER = "other (interpreter, GC, unattributed)"
#: A sample of a thread with no Python frame: native code (the Pulsar client's C++ threads,
#: RocksDB's, the event loop's own C).
NATIVE = "native threads (no Python frame: Pulsar C++, RocksDB, uvloop)"


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` and its children for `seconds`; it writes collapsed stacks to `out`."""
    # The project's own py-spy (pyproject.toml's dev dependencies), beside this Python.
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--threads",
                             "--nonblocking", "--rate", str(rate), "--duration", str(int(seconds)),
                             "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarize(path: Path) -> Counter[str]:
    """Samples per part of a py-spy raw (collapsed) recording."""
    parts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        for name, pattern in _COMPILED:
            if pattern.search(stack):
                parts[name] += int(count)
                break
        else:
            thread = stack.rsplit(";", 1)[-1]
            parts[NATIVE if thread.startswith("thread") or ";" not in stack else OTHER] += int(count)
    return parts


def table(parts: Counter[str], cpu_ms_per_event: float | None = None) -> str:
    """A Markdown table: each part's share of the samples (and ms per event, given the CPU)."""
    total = sum(parts.values()) or 1
    head = "| part | share of CPU samples |" + (" ms per event |" if cpu_ms_per_event else "")
    rule = "|---|---|" + ("---|" if cpu_ms_per_event else "")
    rows = [head, rule]
    for name, n in parts.most_common():
        row = f"| {name} | {100 * n / total:.1f}% |"
        if cpu_ms_per_event:
            row += f" {cpu_ms_per_event * n / total:.3f} |"
        rows.append(row)
    rows.append(f"| (samples) | {total} |" + (f" {cpu_ms_per_event:.3f} |" if cpu_ms_per_event else ""))
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recording", type=Path)
    p.add_argument("--cpu-ms-per-event", type=float)
    args = p.parse_args()
    print(table(summarize(args.recording), args.cpu_ms_per_event))


if __name__ == "__main__":
    main()
