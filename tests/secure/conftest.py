"""The secured local stack (`make dev-up SECURE=1`: TLS, SASL/SCRAM and ACLs on Kafka, TLS and
tokens on Pulsar, hostssl and scram on PostgreSQL), started by stack/stack.sh itself for this
session on free ports in a temporary STACK_DIR, beside the plaintext stack the other tests use.
Java, Maven and openssl are needed as for the plaintext stack: a missing one fails the start."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[2]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY='value' lines, as stack/secure/secure.sh writes them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


@dataclass
class SecureStack:
    stack_dir: Path        # STACK_DIR/secure: tls/, secrets/, *.env
    ports: dict[str, int]
    worker_env: dict[str, str]
    participants_env: dict[str, str]
    admin_env: dict[str, str]

    @property
    def ca(self) -> Path:
        return self.stack_dir / "tls" / "ca.pem"

    @property
    def secrets(self) -> Path:
        return self.stack_dir / "secrets"


@pytest.fixture(scope="session")
def secure_stack() -> Iterator[SecureStack]:
    base = Path(tempfile.mkdtemp(prefix="secure-stack-"))
    os.chmod(base, 0o755)
    ports = {"KAFKA_PORT": free_port(), "KAFKA_CONTROLLER_PORT": free_port(), "PULSAR_PORT": free_port(),
             "PULSAR_WEB_PORT": free_port(), "PULSAR_BOOKIE_PORT": free_port(), "PG_PORT": free_port()}
    cache = Path(os.environ.get("STACK_DIR", ROOT / ".stack")) / "cache"
    env = {**os.environ, "SECURE": "1", "STACK_DIR": str(base), "STACK_CACHE": str(cache),
           **{k: str(v) for k, v in ports.items()}}
    env.pop("PGSSLMODE", None)
    up = subprocess.run([str(ROOT / "stack" / "stack.sh"), "up"], env=env, capture_output=True, text=True,
                        timeout=600)
    try:
        assert up.returncode == 0, f"the secured stack did not start:\n{up.stdout}\n{up.stderr}"
        sd = base / "secure"
        yield SecureStack(sd, ports, read_env_file(sd / "worker.env"), read_env_file(sd / "participants.env"),
                          read_env_file(sd / "admin.env"))
    finally:
        subprocess.run([str(ROOT / "stack" / "stack.sh"), "clean"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(base, ignore_errors=True)
