"""The local stack is the real thing: Apache Kafka from Maven Central, and its scripts are
idempotent and say what runs."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import KAFKA

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))


def _api_versions(host: str, port: int) -> dict[int, tuple[int, int]]:
    """Send a Kafka ApiVersions v0 request; return api key -> (min, max) version."""
    client_id = b"saga-tests"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(s, 4))[0]
        data = _read(s, size)
    correlation, error, count = struct.unpack(">ihi", data[:10])
    assert correlation == 7 and error == 0
    out = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", data[10 + 6 * i: 16 + 6 * i])
        out[key] = (lo, hi)
    return out


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "Kafka closed the connection"
        buf += chunk
    return buf


def _listener_pid(port: int) -> int:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    assert "pid=" in out, f"nothing listens on {port}: {out!r}"
    return int(out.split("pid=")[1].split(",")[0])


def test_kafka_is_apache_kafka_from_maven_central(stack: None) -> None:
    host, port = KAFKA.split(":")
    # The process on the Kafka port is a JVM running Apache Kafka's main class ...
    cmdline = Path(f"/proc/{_listener_pid(int(port))}/cmdline").read_bytes().split(b"\0")
    args = [a.decode() for a in cmdline]
    assert "kafka.Kafka" in args, args
    classpath = args[args.index("-cp") + 1]
    lib = Path(classpath.rstrip("*"))
    jar = lib / "kafka_2.13-4.4.0.jar"
    assert jar.exists(), f"{jar} not on the broker's class path {classpath}"
    # ... whose jar is byte for byte the artifact Maven Central published (Maven keeps the
    # repository's .sha1 beside the downloaded file).
    m2 = Path.home() / ".m2/repository/org/apache/kafka/kafka_2.13/4.4.0/kafka_2.13-4.4.0.jar.sha1"
    published = m2.read_text().split()[0]
    assert hashlib.sha1(jar.read_bytes()).hexdigest() == published
    # ... and it speaks the protocol of Kafka 4: KRaft-era APIs a look-alike lacks.
    apis = _api_versions(host, int(port))
    for key, name in ((18, "ApiVersions"), (60, "DescribeCluster"), (68, "ConsumerGroupHeartbeat"),
                      (69, "ConsumerGroupDescribe"), (76, "ShareGroupHeartbeat")):
        assert key in apis, f"{name} (api key {key}) missing: not Apache Kafka 4.x"
    assert apis[0][1] >= 12, "Produce v12+ is Kafka 4.x"


def test_dev_up_is_idempotent_and_status_says_what_runs(stack: None) -> None:
    env = {**os.environ, "STACK_DIR": str(STACK_DIR)}
    up = subprocess.run([ROOT / "stack/stack.sh", "up"], capture_output=True, text=True, env=env,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    assert "kafka already running" in up.stdout
    assert "pulsar already running" in up.stdout
    assert "postgres already running" in up.stdout
    status = subprocess.run([ROOT / "stack/stack.sh", "status"], capture_output=True, text=True,
                            env=env, timeout=30)
    assert status.returncode == 0
    for component in ("kafka", "pulsar", "postgres"):
        line = next(line for line in status.stdout.splitlines() if line.strip().startswith(component))
        assert " up " in f"{line} ", line


@pytest.mark.parametrize("port_var", ["KAFKA_PORT", "PULSAR_PORT", "PG_PORT"])
def test_dev_up_on_a_busy_port_names_it(stack: None, tmp_path: Path, port_var: str) -> None:
    """A second stack on ports that are taken refuses in one line, naming the port."""
    busy = {"KAFKA_PORT": KAFKA.split(":")[1], "PULSAR_PORT": "6650", "PG_PORT": "5432"}[port_var]
    component = {"KAFKA_PORT": "kafka", "PULSAR_PORT": "pulsar", "PG_PORT": "postgres"}[port_var]
    env = {**os.environ, "STACK_DIR": str(tmp_path / "other-stack"), port_var: busy}
    run = subprocess.run([ROOT / "stack/stack.sh", "up", component], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"port {busy}" in errors[0] and "taken" in errors[0], run.stderr
