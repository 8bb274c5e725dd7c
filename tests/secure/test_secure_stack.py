"""The secured stack end to end: what it refuses to strangers, a saga through TLS and
credentials, and each wrong setting stopping the worker with one line naming the service."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pulsar
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from common.security import kafka_client_options, pulsar_options_from_env, ssl_context
from simulators.participants import Participants
from tests.secure.conftest import ROOT, SecureStack
from tests.support.worker import Names, Worker

BODY = {"nombre": "Acme SAS", "email": "ops@acme.example", "telefono": "+57 1 555 0101",
        "direccion": "Cra 7 # 71-21"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint_token(role: str, key: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": role}).encode())
    sig = _b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def other_ca(tmp: Path) -> Path:
    """A CA that signed nothing the stack serves."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "o.key"),
                    "-out", str(tmp / "other-ca.pem"), "-days", "2", "-subj", "/CN=someone else"],
                   check=True, capture_output=True)
    return tmp / "other-ca.pem"


def kafka_bootstrap(s: SecureStack) -> str:
    return f"localhost:{s.ports['KAFKA_PORT']}"


# ---------------------------------------------------------------- strangers are refused

async def _produce(s: SecureStack, topic: str, **options: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(s), request_timeout_ms=8000, **options)
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 20)
    finally:
        await producer.stop()


def _worker_kafka(s: SecureStack, password: str | None = None) -> dict[str, object]:
    return kafka_client_options(
        "SASL_SSL", username=s.worker_env["KAFKA_SASL_USERNAME"],
        password=password if password is not None
        else Path(s.worker_env["KAFKA_SASL_PASSWORD_FILE"]).read_text(),
        context=ssl_context(s.ca))


async def test_kafka_refuses_plaintext_and_tls_without_credentials(secure_stack: SecureStack) -> None:
    with pytest.raises((KafkaError, OSError, asyncio.TimeoutError)):
        await _produce(secure_stack, "saga-orchestrator-probe")
    with pytest.raises((KafkaError, OSError, asyncio.TimeoutError)):
        await _produce(secure_stack, "saga-orchestrator-probe", security_protocol="SSL",
                       ssl_context=ssl_context(secure_stack.ca))
    with pytest.raises(KafkaError):
        await _produce(secure_stack, "saga-orchestrator-probe",
                       **_worker_kafka(secure_stack, "wrong-password"))


async def test_kafka_acls_give_the_worker_its_own_topics_only(secure_stack: SecureStack) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap(secure_stack),
                                **_worker_kafka(secure_stack))
    await admin.start()
    try:
        mine = f"saga-orchestrator-probe-{uuid.uuid4().hex[:6]}"
        await admin.create_topics([NewTopic(mine, 1, 1)])
        await _produce(secure_stack, mine, **_worker_kafka(secure_stack))
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(secure_stack, "someone-elses-topic", **_worker_kafka(secure_stack))
    finally:
        await admin.close()


def _pulsar_send(s: SecureStack, url: str, **options: object) -> None:
    client = pulsar.Client(url, operation_timeout_seconds=8, connection_timeout_ms=4000,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
                           **options)  # type: ignore[arg-type]
    try:
        client.create_producer("persistent://public/default/secure-probe").send(b"x")
    finally:
        client.close()


def test_pulsar_refuses_plaintext_and_tls_without_a_token(secure_stack: SecureStack) -> None:
    port = secure_stack.ports["PULSAR_PORT"]
    with pytest.raises(pulsar.PulsarException):
        _pulsar_send(secure_stack, f"pulsar://localhost:{port}")
    with pytest.raises(pulsar.PulsarException):
        _pulsar_send(secure_stack, f"pulsar+ssl://localhost:{port}",
                     tls_trust_certs_file_path=str(secure_stack.ca))
    # with the participants' token it works
    _pulsar_send(secure_stack, f"pulsar+ssl://localhost:{port}",
                 **pulsar_options_from_env(secure_stack.participants_env))


def test_postgres_refuses_without_tls_or_with_a_wrong_password(secure_stack: SecureStack) -> None:
    port = secure_stack.ports["PG_PORT"]
    password = Path(secure_stack.worker_env["DATABASE_PASSWORD_FILE"]).read_text()
    base = f"host=localhost port={port} dbname=saga_db user=saga connect_timeout=5"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(f"{base} sslmode=disable", password=password).close()
    verified = f"{base} sslmode=verify-full sslrootcert={secure_stack.ca}"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(verified, password="wrong").close()
    with psycopg.connect(verified, password=password) as conn:
        assert conn.info.pgconn.ssl_in_use


# ---------------------------------------------------------------- a saga, secured

def _secure_names_env(s: SecureStack, names: Names) -> dict[str, str]:
    app_id = f"saga-orchestrator-{names.tag}"  # the worker's principal owns topics and group so prefixed
    return {**s.worker_env, "APP_ID": app_id, "SNAPSHOT_SCHEMA": f"t_{names.tag}"}


async def test_a_saga_runs_end_to_end_through_tls_and_credentials(secure_stack: SecureStack,
                                                                tmp_path: Path) -> None:
    names = Names()
    worker = Worker(names, tmp_path / "data", env=_secure_names_env(secure_stack, names)).start()
    sims = Participants(secure_stack.worker_env["BROKER_URL"],
                        integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events,
                        client_options=pulsar_options_from_env(secure_stack.participants_env))
    try:
        await worker.wait_ready(timeout=120)
        status, ready = await worker.get("/ready")
        assert status == 200 and ready["ready"] is True, ready
        await sims.start()
        status, body = await worker.post("/api/v1/saga/partner-creation",
                                         {**BODY, "correlation_id": f"secure-{names.tag}"})
        assert status == 202, body
        saga_id = body["saga_id"]
        deadline = time.monotonic() + 90
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            status, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
            if status == 200 and state["status"] in ("completed", "compensated", "failed"):
                break
            await asyncio.sleep(0.5)
        assert state.get("status") == "completed", state
        assert sims.counts["partner_created"] == 1 and sims.counts["alliance_created"] == 1, sims.counts
        # the snapshot reached PostgreSQL over TLS as the `saga` role
        status, listed = await worker.get("/api/v1/sagas?status=completed")
        assert status == 200 and saga_id in json.dumps(listed)
    finally:
        await sims.stop()
        worker.kill()


# ---------------------------------------------------------------- one line per wrong setting

def _preflight(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("KAFKA_", "PULSAR_", "DATABASE_", "BROKER_URL", "APP_ID", "PG"))}
    return subprocess.run([sys.executable, "-m", "orchestrator", "worker", "--web-port", "0"],
                          cwd=ROOT, env={**inherited, "DATADIR": str(tmp / "d"), "OPERATOR_TOKEN": "x" * 24,
                                         **env},
                          capture_output=True, text=True, timeout=120)


def _cases(s: SecureStack, tmp: Path) -> dict[str, tuple[dict[str, str], list[str]]]:
    key = (s.secrets / "pulsar-token-secret.key").read_bytes()
    tokens = {"forged": mint_token("saga-orchestrator", b"not the broker's key" * 2),
              "nobody": mint_token("nobody", key)}
    for name, token in tokens.items():
        (tmp / f"{name}.token").write_text(token)
    pg_url = s.worker_env["DATABASE_URL"]
    return {
        "kafka wrong password": ({"KAFKA_SASL_PASSWORD_FILE": "", "KAFKA_SASL_PASSWORD": "wrong-password"},
                                 ["Kafka", "refused the credentials", "KAFKA_SASL_PASSWORD_FILE"]),
        "kafka untrusted CA": ({"KAFKA_SSL_CAFILE": str(other_ca(tmp))},
                               ["Kafka", "not trusted", "KAFKA_SSL_CAFILE"]),
        "kafka plaintext against SASL_SSL": ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
                                             ["Kafka", "KAFKA_SECURITY_PROTOCOL"]),
        "kafka ACLs refuse another prefix": ({"APP_ID": "someone-else"},
                                             ["Kafka", "ACLs refuse", "someone-else"]),
        "pulsar without token": ({"PULSAR_AUTH_TOKEN_FILE": ""}, ["Pulsar", "authentication"]),
        "pulsar forged token": ({"PULSAR_AUTH_TOKEN_FILE": str(tmp / "forged.token")},
                                ["Pulsar", "authentication"]),
        "pulsar role without permission": ({"PULSAR_AUTH_TOKEN_FILE": str(tmp / "nobody.token")},
                                           ["Pulsar", "may not use"]),
        "pulsar untrusted CA": ({"PULSAR_TLS_TRUST_CERTS_FILE": str(tmp / "other-ca.pem")},
                                ["Pulsar", "not trusted", "PULSAR_TLS_TRUST_CERTS_FILE"]),
        "postgres wrong password": ({"DATABASE_PASSWORD_FILE": "", "DATABASE_PASSWORD": "wrong"},
                                    ["PostgreSQL", "refused the password"]),
        "postgres without TLS": ({"DATABASE_URL": pg_url.split("?")[0] + "?sslmode=disable"},
                                 ["PostgreSQL", "without TLS"]),
    }


def test_each_wrong_setting_stops_the_worker_with_one_line(secure_stack: SecureStack, tmp_path: Path) -> None:
    base = {**secure_stack.worker_env, "APP_ID": "saga-orchestrator-preflight"}
    failures = []
    for name, (change, words) in _cases(secure_stack, tmp_path).items():
        env = {k: v for k, v in {**base, **change}.items() if v != ""}
        done = _preflight(env, tmp_path)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        if done.returncode == 0 or len(lines) != 1 or "Traceback" in done.stderr \
                or not all(w in lines[0] for w in words):
            failures.append(f"{name}: exit {done.returncode}, stderr:\n{done.stderr[-1500:]}")
    assert not failures, "\n\n".join(failures)
