"""The snapshot mirror in a child process of the worker (SNAPSHOT_MIRROR=process).

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
import signal
import sys
from collections.abc import Callable
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


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class MirrorProcess:
    def __init__(self, metrics: Metrics, *, command: list[str] | None = None,
                 on_report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.metrics = metrics
        self.command = command or [sys.executable, "-m", "snapshots", "mirror", "--report"]
        self.migrated = False
        self.on_report = on_report
        self._base: dict[str, float] = {}  # counters of children that already exited
        self._last: dict[str, float] = {}
        self._proc: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        """Keep a child running until cancelled; then stop it. A child that exits is started
        again after the waits of the "mirror-restart" policy (common.retry); one that ran
        HEALTHY_AFTER_S starts them over. With a budget set for that policy
        (RETRY_MIRROR_RESTART) and spent, the last exit is raised as MirrorExited."""
        waits = policy("mirror-restart").waits()
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
                    raise MirrorExited(f"snapshot mirror process exited with {code}; the "
                                       "mirror-restart retry budget is spent")
                delay = waits.next_delay()
                log.error("snapshot mirror process exited with %s; restarting in %.1fs", code, delay)
                self.metrics.inc("snapshot_mirror_restarts_total")
                await asyncio.sleep(delay)
        finally:
            await self.stop()

    async def _run_once(self) -> int:
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        log.info("snapshot mirror: child process %d", proc.pid)
        assert proc.stdout is not None
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
            counters, gauges = dict(report["counters"]), dict(report["gauges"])
        except (ValueError, KeyError, TypeError):
            log.warning("snapshot mirror printed %r", line[:200])
            return
        self.migrated = bool(report.get("migrated"))
        self._last = counters
        for name, value in counters.items():
            self.metrics.counters[(name, ())] = self._base.get(name, 0) + value
        for name, value in gauges.items():
            self.metrics.set(name, value)
        if self.on_report is not None:
            self.on_report(report)

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
