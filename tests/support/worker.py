"""Orchestrator workers as real subprocesses (python -m orchestrator worker), one per
datadir and web port, so tests can kill them (SIGKILL included) and start them again.
`get`/`post` send the worker's operator token unless told otherwise (`token=None`: a
stranger; another token: a caller holding only its roles)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.stack import KAFKA_URL, PG_URL, PULSAR_URL

__all__ = ["AS_OPERATOR", "OPERATOR_TOKEN", "Names", "Worker", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_TOKEN = "test-operator-token-0123456789"


class _Operator:
    """The default of `token=`: the worker's own operator token."""


AS_OPERATOR = _Operator()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Names:
    """Unique Kafka app id and Pulsar topics for one test, so tests never see each other."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def app_id(self) -> str:
        return f"t-{self.tag}"

    def pulsar(self, name: str) -> str:
        return f"persistent://public/default/{name}-{self.tag}"

    @property
    def partner_events(self) -> str:
        return self.pulsar("partner-events")

    @property
    def alliance_events(self) -> str:
        return self.pulsar("alliance-events")

    @property
    def integraciones_commands(self) -> str:
        return self.pulsar("integraciones-commands")

    @property
    def alianzas_commands(self) -> str:
        return self.pulsar("alianzas-commands")

    @property
    def lifecycle(self) -> str:
        return self.pulsar("saga-lifecycle")

    @property
    def dead_letters(self) -> str:
        return self.pulsar("saga-dead-letters")

    def env(self) -> dict[str, str]:
        return {
            "APP_ID": self.app_id, "KAFKA_BROKER_URL": KAFKA_URL, "BROKER_URL": PULSAR_URL,
            "DATABASE_URL": PG_URL, "PARTNER_EVENTS_TOPIC": self.partner_events,
            "ALLIANCE_EVENTS_TOPIC": self.alliance_events,
            "INTEGRACIONES_COMMANDS_TOPIC": self.integraciones_commands,
            "ALIANZAS_COMMANDS_TOPIC": self.alianzas_commands, "SAGA_LIFECYCLE_TOPIC": self.lifecycle,
            "DEAD_LETTER_TOPIC": self.dead_letters, "PULSAR_SUBSCRIPTION": f"orch-{self.tag}",
            "SNAPSHOT_SCHEMA": self.app_id, "OPERATOR_TOKEN": OPERATOR_TOKEN,
        }


class Worker:
    def __init__(self, names: Names, datadir: Path, *, env: dict[str, str] | None = None,
                 name: str = "w", root: Path = ROOT) -> None:
        """`root`: the checkout whose code runs (another release's worktree in the upgrade
        test), with this environment's Python."""
        self.names = names
        self.root = root
        self.datadir = datadir
        self.port = free_port()
        self.name = name
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = datadir.parent / f"{name}-{self.port}.log"
        self.started_at = 0.0
        self.ready_after_s: float | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The operator token this worker was started with (every role)."""
        return self.extra_env.get("OPERATOR_TOKEN", OPERATOR_TOKEN)

    def auth(self, token: str | _Operator | None = AS_OPERATOR) -> dict[str, str]:
        """The Authorization header of `token` (default the operator's; None: none)."""
        if isinstance(token, _Operator):
            token = self.token
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def start(self) -> Worker:
        # The API's door as the test sets it: none of the caller's own token settings.
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("API_", "OPERATOR_TOKEN", "SAGA_TOKEN"))}
        env = {**inherited, **self.names.env(), "DATADIR": str(self.datadir),
               "WEB_PORT": str(self.port), **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "-l", "info", "--web-host", "127.0.0.1",
             "--web-port", str(self.port)],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until Faust says Ready (group joined, tables recovered) and GET /ready answers
        200 (Pulsar consumers subscribed, PostgreSQL schema in place)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            if "[^Worker]: Ready" in self.log()[self._log_offset:] and await self._healthy():
                self.ready_after_s = time.monotonic() - self.started_at
                return self.ready_after_s
            await asyncio.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready in {timeout}s:\n{self.log()[-3000:]}")

    async def _healthy(self) -> bool:
        try:
            status, _ = await self.get("/ready")
            return status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def get(self, path: str, *, token: str | _Operator | None = AS_OPERATOR,
                  headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.get(self.url + path, headers={**self.auth(token), **(headers or {})}) as r:
                body = await r.read()
                return r.status, _json_or_text(body)

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None,
                   token: str | _Operator | None = AS_OPERATOR,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST `body` as JSON (or `raw` bytes); `headers` win over the token's."""
        data: Any = raw if raw is not None else json.dumps(body).encode()
        if len(data) > 1024**2:
            data = io.BytesIO(data)  # aiohttp warns about large raw bytes
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
            async with s.post(self.url + path, data=data,
                              headers={"Content-Type": "application/json", **self.auth(token),
                                       **(headers or {})}) as r:
                return r.status, _json_or_text(await r.read())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
