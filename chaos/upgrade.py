"""make upgrade-test: a rolling upgrade under load, from the previous release to this checkout.

The previous release is the newest release CHANGELOG.md records below this checkout's version
(pyproject.toml), with its tag and full commit; that commit is checked out in a git worktree
(a clone without tags still has it) and runs as two workers (with
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
from dataclasses import dataclass
from pathlib import Path

from chaos.harness import Row, World, outcome, print_table, trace
from common.version import commit, version
from tests.support.worker import ROOT, Worker

__all__ = ["Release", "ensure_commit", "previous_release", "recorded_releases", "release_tree",
           "rolling_upgrade"]

log = logging.getLogger("chaos.upgrade")


def _release(text: str) -> tuple[int, int, int]:
    major, minor, patch = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text).groups()  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)


@dataclass(frozen=True)
class Release:
    """A release: its version, its tag and the commit the tag names (CHANGELOG.md's record)."""

    version: str
    commit: str

    @property
    def tag(self) -> str:
        return f"v{self.version}"


_SECTION = re.compile(r"^## \[(\d+\.\d+\.\d+)\][^\n]*\n(.*?)(?=^## |\Z)", re.M | re.S)
_COMMIT = re.compile(r"commit `([0-9a-f]{40})`")


def recorded_releases(root: Path = ROOT) -> list[Release]:
    """The releases CHANGELOG.md records, each section's first full `commit `<sha>``, oldest
    first. The record, not the tags, is what a clone always has (CI clones main without tags)."""
    text = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    out = []
    for version_, body in _SECTION.findall(text):
        found = _COMMIT.search(body)
        if not found:
            raise RuntimeError(f"CHANGELOG.md: release {version_} names no full commit (commit `<40 hex>`)")
        out.append(Release(version_, found.group(1)))
    return sorted(out, key=lambda r: _release(r.version))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def _has_commit(root: Path, sha: str) -> bool:
    return _git(root, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def ensure_commit(release: Release, root: Path = ROOT) -> None:
    """`release`'s commit in this clone: a shallow clone is deepened from its origin; raises
    when it still is not there."""
    if not _has_commit(root, release.commit):
        _git(root, "fetch", "--quiet", "--unshallow")
        _git(root, "fetch", "--quiet", "origin", release.commit)
    if not _has_commit(root, release.commit):
        raise RuntimeError(f"release {release.tag}'s commit {release.commit} is not in {root} "
                           f"(a shallow clone?); `git fetch --unshallow` brings it")


def previous_release(current: str | None = None, root: Path = ROOT) -> Release:
    """The newest release CHANGELOG.md records below `current` (default: this checkout's
    version; a dev version 0.4.0.dev0 counts as 0.4.0), its commit present in this clone (a
    shallow clone is deepened from its origin). Raises when there is none, or its commit cannot
    be had; a tag of the same name must name the same commit."""
    current = current or version()
    below = _release(current)
    older = [r for r in recorded_releases(root) if _release(r.version) < below]
    if not older:
        raise RuntimeError(f"no release below {current} recorded in {root / 'CHANGELOG.md'}")
    release = older[-1]
    ensure_commit(release, root)
    tagged = _git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{release.tag}^{{commit}}")
    if tagged.returncode == 0 and tagged.stdout.strip() != release.commit:
        raise RuntimeError(f"tag {release.tag} names {tagged.stdout.strip()}, CHANGELOG.md says "
                           f"{release.commit}: one of them is wrong")
    return release


@contextlib.contextmanager
def release_tree(release: Release, folder: Path, root: Path = ROOT) -> Iterator[Path]:
    """A worktree of `release`'s commit in `folder`, removed afterwards."""
    tree = folder / f"release-{release.tag}"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "--force", str(tree),
                    release.commit],
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
                          release: Release | None = None) -> Row:
    release = release or previous_release()
    tag = release.tag
    folder = Path(tempfile.mkdtemp(prefix="upgrade-"))
    with release_tree(release, folder) as old_root:
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
    p.add_argument("--from", dest="from_version", metavar="X.Y.Z",
                   help="the release to upgrade from, as CHANGELOG.md records it (default: the previous one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        chosen = None
        if args.from_version:
            wanted = args.from_version.lstrip("v")
            chosen = next((r for r in recorded_releases() if r.version == wanted), None)
            if chosen is None:
                raise SystemExit(f"upgrade: no release {args.from_version} in CHANGELOG.md")
        row = asyncio.run(rolling_upgrade(args.rate, args.seconds, release=chosen))
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
