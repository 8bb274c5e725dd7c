"""The snapshot mirror in a child process of the worker (SNAPSHOT_MIRROR=process); the
outbox bridge runs the same way (OUTBOX_BRIDGE=process, `python -m bridges outbox --report`).

The mirror parses nothing, but sending a batch of states to PostgreSQL and reading the
changelog back took a tenth of the worker's event loop, which is the saga agent's. As a
child (`python -m snapshots mirror --report`) it runs on another core. The worker starts
it, restarts it when it exits, and stops it when the worker stops; the child also gets
SIGTERM if the worker dies without stopping it (Linux's parent-death signal), and is started
again with the project's retry policy ("mirror-restart", common/retry.py) when it exits. Its
counters come back as JSON lines on its stdout and are shown in the worker's /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from common.retry import policy
from runtime.metrics import Metrics

__all__ = ["MirrorExited", "MirrorProcess"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: A child that ran this long was healthy: its next exit waits from the start again.
HEALTHY_AFTER_S = 60.0


class MirrorExited(RuntimeError):
    """The child kept exiting and the restart policy's budget is spent."""


#: The mirror's scheduling priority below the worker's: when the cores are busy, the saga agent
#: comes first and the snapshots catch up after (#23). (Not the outbox bridge's: it is on
#: every saga's path.)
MIRROR_NICENESS = 10


def _die_with_parent(niceness: int = 0) -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)


class MirrorProcess:
    """A child process kept running: the snapshot mirror unless told otherwise (the outbox
    bridge is another: orchestrator/services.py). Its reports are JSON lines on its stdout:
    `counters` (name -> value), `labeled` ([name, labels, value], ...), `gauges`; the
    counters go on from where an exited child left them."""

    def __init__(self, metrics: Metrics, *, command: list[str] | None = None,
                 on_report: Callable[[dict[str, Any]], None] | None = None,
                 name: str = "snapshot mirror", restarts: str = "snapshot_mirror_restarts_total",
                 restart_policy: str = "mirror-restart", niceness: int = MIRROR_NICENESS,
                 on_start: Callable[[], None] | None = None) -> None:
        self.metrics = metrics
        self.command = command or [sys.executable, "-m", "snapshots", "mirror", "--report"]
        self.migrated = False
        self.on_report = on_report
        self.name = name
        self.restarts = restarts
        self.restart_policy = restart_policy
        self.niceness = niceness
        #: Called once the child runs: what it must be told first (`tell`), say.
        self.on_start = on_start
        # (name, labels) -> counters of children that already exited, and the running one's
        self._base: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._proc: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        """Keep a child running until cancelled; then stop it. A child that exits is started
        again after the waits of the "mirror-restart" policy (common.retry); one that ran
        HEALTHY_AFTER_S starts them over. With a budget set for that policy
        (RETRY_MIRROR_RESTART) and spent, the last exit is raised as MirrorExited."""
        waits = policy(self.restart_policy).waits()
        try:
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    code: int | str = await self._run_once()
                except (OSError, ValueError) as exc:  # could not start it; an unreadable line
                    code = repr(exc)
                    await self.stop()
                if asyncio.get_running_loop().time() - started > HEALTHY_AFTER_S:
                    waits.reset()
                if waits.exhausted:
                    raise MirrorExited(f"{self.name} process exited with {code}; the "
                                       f"{self.restart_policy} retry budget is spent")
                delay = waits.next_delay()
                log.error("%s process exited with %s; restarting in %.1fs", self.name, code, delay)
                self.metrics.inc(self.restarts)
                await asyncio.sleep(delay)
        finally:
            await self.stop()

    async def _run_once(self) -> int:
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if self.on_start else asyncio.subprocess.DEVNULL,
            preexec_fn=partial(_die_with_parent, self.niceness))
        log.info("%s: child process %d", self.name, proc.pid)
        assert proc.stdout is not None
        if self.on_start is not None:
            self.on_start()
        try:
            async for line in proc.stdout:
                self._report(line)
            return await proc.wait()
        finally:
            for name, value in self._last.items():
                self._base[name] = self._base.get(name, 0) + value
            self._last = {}

    def _report(self, line: bytes) -> None:
        try:
            report = json.loads(line)
            counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
                (name, ()): value for name, value in dict(report["counters"]).items()}
            counters.update({(name, tuple(sorted(dict(labels).items()))): value
                             for name, labels, value in report.get("labeled", ())})
            gauges = dict(report["gauges"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s printed %r", self.name, line[:200])
            return
        self.migrated = bool(report.get("migrated"))
        self._last = counters
        for key, value in counters.items():
            self.metrics.counters[key] = int(self._base.get(key, 0) + value)
        for name, value in gauges.items():
            self.metrics.set(name, value)
        if self.on_report is not None:
            self.on_report(report)

    def tell(self, message: dict[str, Any]) -> None:
        """A JSON line to the running child's stdin (children started with `on_start`)."""
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
