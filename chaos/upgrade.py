"""make upgrade-test: a rolling upgrade under load, from the previous release to this checkout.

The previous release is the highest `vX.Y.Z` tag below this checkout's version
(pyproject.toml); it is checked out in a git worktree of its tag and runs as two workers (with
this environment's Python: the releases share their locked dependencies; a release that
changes them needs its own environment here). Under a steady load of sagas (the fault
harness's participants, some alliances failing, some alianzas silent), each worker is stopped
with SIGTERM, as a rolling restart does, and replaced by this checkout's code on the same data
directory (a StatefulSet pod keeps its volume), which must be ready before the next one goes.
Then the harness's table: sagas started, ended as expected, ended wrongly, not ended ("lost"),
ended twice, and the longest pause: the longest time no saga published a lifecycle notice
between the start of the load and the last saga's end.

    uv run python -m chaos.upgrade [--rate 20] [--seconds 60]        (make upgrade-test)

tests/e2e/test_upgrade.py runs it reduced in `make test`, asserting outcomes only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from chaos.harness import Row, World, outcome, print_table, trace
from common.version import commit, version
from tests.support.worker import ROOT, Worker

__all__ = ["previous_release", "release_tree", "rolling_upgrade"]

log = logging.getLogger("chaos.upgrade")


def _release(text: str) -> tuple[int, int, int]:
    major, minor, patch = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text).groups()  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)


def previous_release(current: str | None = None, root: Path = ROOT) -> str:
    """The highest release tag below `current` (default: this checkout's version); a dev
    version 0.4.0.dev0 counts as 0.4.0. Raises when there is none (a clone without tags)."""
    current = current or version()
    below = _release(current)
    tags = subprocess.run(["git", "-C", str(root), "tag", "-l", "v*"], capture_output=True, text=True,
                          check=True).stdout.split()
    older = sorted((_release(t), t) for t in tags
                   if re.fullmatch(r"v\d+\.\d+\.\d+", t) and _release(t) < below)
    if not older:
        raise RuntimeError(f"no release tag below {current} in {root} (tags: {tags or 'none'}); "
                           f"`git fetch --tags` brings them")
    return older[-1][1]


@contextlib.contextmanager
def release_tree(tag: str, folder: Path, root: Path = ROOT) -> Iterator[Path]:
    """A worktree of `tag` in `folder`, removed afterwards."""
    tree = folder / f"release-{tag}"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "--force", str(tree), tag],
                   check=True, capture_output=True, text=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                       capture_output=True, text=True)
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True)


def longest_pause(times: list[float], start: float, end: float) -> float:
    """The longest gap between `start`, the sorted `times` within [start, end], and `end`."""
    points = [start, *(t for t in sorted(times) if start <= t <= end), end]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


async def rolling_upgrade(rate: float, seconds: float, *, settle_s: float = 180.0,
                          tag: str | None = None) -> Row:
    tag = tag or previous_release()
    folder = Path(tempfile.mkdtemp(prefix="upgrade-"))
    with release_tree(tag, folder) as old_root:
        # Step timeouts that outlast a worker's replacement (as the harness's outage scenarios
        # do): a saga giving up a step during the pause ends compensated, rightly, but not as
        # the participants' choices say.
        world = World(worker_root=old_root, folder=folder, env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "30"})
        async with world as w:
            assert w.lifecycle is not None
            started_at = time.time()
            load = asyncio.ensure_future(w.load(rate, seconds))
            for i, old in enumerate(list(w.workers)):
                await asyncio.sleep(seconds / (len(w.workers) + 1))
                old.stop()  # SIGTERM, as a rolling restart
                new = Worker(w.names, old.datadir, name=f"{old.name}-new", env=old.extra_env).start()
                w.workers[i] = new
                await new.wait_ready(timeout=180)
            await load
            await w.settle(settle_s)
            row = outcome(f"rolling upgrade {tag} -> {version()}", w.started, w.lifecycle)
            times = [m.at for m in list(w.lifecycle.messages)]
            ended = max(times, default=started_at)
            row.pause_s = longest_pause(times, started_at, ended)
            row.note = (f"two workers of {tag} replaced one at a time by {version()} ({commit()}), "
                        f"each on its predecessor's data directory")
            w.keep = not row.clean or bool(os.environ.get("CHAOS_KEEP"))
            for worker in w.workers if w.keep else ():
                log.error("upgrade: worker %s log at %s", worker.name, worker.log_path)
            if not row.clean:
                await trace(w, "upgrade", [odd.split(" ", 1)[0] for odd in row.odd])
            return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="sagas started per second")
    p.add_argument("--seconds", type=float, default=60.0, help="of load; the workers are replaced during it")
    p.add_argument("--tag", help="the release to upgrade from (default: the previous one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        row = asyncio.run(rolling_upgrade(args.rate, args.seconds, tag=args.tag))
    except Exception as exc:
        logging.exception("the upgrade test failed")
        row = Row("rolling upgrade", 0, 0, 0, 0, 0, note=f"FAILED: {exc!r}"[:500])
    print()
    print_table([row])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if row.clean else 1)  # past the Pulsar client's teardown abort (chaos/__main__.py)


if __name__ == "__main__":
    main()
