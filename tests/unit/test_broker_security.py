"""Settings for Kafka SASL/TLS, Pulsar TLS and tokens, PostgreSQL passwords (#21): each one
validated at start-up in one line, turned into the clients' own options, secrets read from
files; and the start-up checks' words for a TLS handshake that fails (against a real TLS server
on the loopback, its certificates made by openssl)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from common.security import kafka_client_options, pulsar_options_from_env, read_secret
from orchestrator.preflight import check_tls
from runtime.app import kafka_credentials
from runtime.errors import postgres_refusal
from runtime.settings import ConfigError, load_settings

SECURITY_VARS = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
                 "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE",
                 "KAFKA_SSL_KEYFILE",
                 "PULSAR_TLS_TRUST_CERTS_FILE", "PULSAR_TLS_HOSTNAME_VERIFICATION", "PULSAR_AUTH_TOKEN",
                 "PULSAR_AUTH_TOKEN_FILE", "DATABASE_PASSWORD", "DATABASE_PASSWORD_FILE")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in SECURITY_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate it signed for localhost/127.0.0.1, and a stranger CA."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return {name: d / f"{name}.pem" for name in ("ca", "other-ca", "server")} | {"key": d / "server.key"}


def _serve(tls: ssl.SSLContext | None) -> Iterator[int]:
    """A server on 127.0.0.1 that completes a TLS handshake (or, without `tls`, reads and
    closes: a plaintext listener)."""
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    if tls is not None:
                        with tls.wrap_socket(conn, server_side=True) as s:
                            s.recv(1)
                    else:
                        conn.recv(1024)
                except (OSError, ssl.SSLError):
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    sock.close()


@pytest.fixture
def tls_port(pki: dict[str, Path]) -> Iterator[int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["server"], pki["key"])
    yield from _serve(ctx)


@pytest.fixture
def plain_port() -> Iterator[int]:
    yield from _serve(None)


def test_plaintext_by_default(env: pytest.MonkeyPatch) -> None:
    cfg = load_settings()
    assert cfg.kafka_security_protocol == "PLAINTEXT"
    assert cfg.kafka_client_options() == {"security_protocol": "PLAINTEXT"}
    assert kafka_credentials(cfg) is None
    assert "authentication" not in cfg.pulsar_client_options()
    assert cfg.database_password_value() is None


@pytest.mark.parametrize(("set_vars", "words"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "saga"},
     "needs KAFKA_SASL_PASSWORD_FILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL:"),
    ({"KAFKA_SASL_MECHANISM": "MD5"}, "KAFKA_SASL_MECHANISM:"),
    ({"KAFKA_SASL_PASSWORD_FILE": "/no/such/file"}, "KAFKA_SASL_PASSWORD_FILE: cannot read /no/such/file"),
    ({"PULSAR_AUTH_TOKEN_FILE": "/no/such/token"}, "PULSAR_AUTH_TOKEN_FILE: cannot read /no/such/token"),
    ({"KAFKA_SSL_CAFILE": "/no/ca.pem"}, "KAFKA_SSL_CAFILE: cannot read /no/ca.pem"),
    ({"PULSAR_TLS_TRUST_CERTS_FILE": "/no/ca.pem"}, "PULSAR_TLS_TRUST_CERTS_FILE: cannot read"),
    ({"DATABASE_PASSWORD_FILE": "/no/pw"}, "DATABASE_PASSWORD_FILE: cannot read /no/pw"),
])
def test_an_incomplete_or_unreadable_setting_is_one_line(env: pytest.MonkeyPatch, set_vars: dict[str, str],
                                                        words: str) -> None:
    for k, v in set_vars.items():
        env.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert words in text and "\n" not in text and text.startswith("configuration error: ")


def test_an_empty_secret_file_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    env.setenv("DATABASE_PASSWORD_FILE", str(empty))
    with pytest.raises(ConfigError, match="is empty"):
        load_settings()


def test_sasl_ssl_becomes_faust_and_aiokafka_options(env: pytest.MonkeyPatch, tmp_path: Path,
                                                     pki: dict[str, Path]) -> None:
    pw = tmp_path / "kafka-password"
    pw.write_text("pa55word\n")
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_USERNAME", "saga-orchestrator")
    env.setenv("KAFKA_SASL_PASSWORD_FILE", str(pw))
    env.setenv("KAFKA_SSL_CAFILE", str(pki["ca"]))
    cfg = load_settings()
    assert "pa55word" not in repr(cfg)
    opts = cfg.kafka_client_options()
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "saga-orchestrator" and opts["sasl_plain_password"] == "pa55word"
    ctx = opts["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]
    creds = kafka_credentials(cfg)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.username == "saga-orchestrator" and creds.password == "pa55word"


def test_ssl_alone_gives_faust_ssl_credentials(env: pytest.MonkeyPatch, pki: dict[str, Path]) -> None:
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    env.setenv("KAFKA_SSL_CAFILE", str(pki["ca"]))
    cfg = load_settings()
    assert isinstance(kafka_credentials(cfg), faust.SSLCredentials)
    assert "sasl_mechanism" not in cfg.kafka_client_options()
    assert kafka_client_options("SASL_PLAINTEXT", username="u", password="p")["security_protocol"] == \
        "SASL_PLAINTEXT"


def test_a_pulsar_token_file_is_read_again_at_each_connection(env: pytest.MonkeyPatch, tmp_path: Path,
                                                                pki: dict[str, Path]) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    env.setenv("PULSAR_AUTH_TOKEN_FILE", str(token))
    env.setenv("PULSAR_TLS_TRUST_CERTS_FILE", str(pki["ca"]))
    env.setenv("BROKER_URL", "pulsar+ssl://localhost:6651")
    opts = load_settings().pulsar_client_options()
    assert opts["tls_trust_certs_file_path"] == str(pki["ca"])
    assert opts["tls_validate_hostname"] is True and opts["tls_allow_insecure_connection"] is False
    assert opts["authentication"] is not None
    # the supplier the client calls at each (re)connection reads the file then: a rotated token
    from common.security import pulsar_token_supplier

    supplier = pulsar_token_supplier(None, token)
    assert callable(supplier) and supplier() == "first-token"
    token.write_text("rotated-token")
    assert supplier() == "rotated-token"
    assert read_secret(token) == "rotated-token"


def test_the_simulators_read_the_same_pulsar_variables(tmp_path: Path, pki: dict[str, Path]) -> None:
    token = tmp_path / "t"
    token.write_text("participants-token")
    opts = pulsar_options_from_env({"PULSAR_AUTH_TOKEN_FILE": str(token),
                                    "PULSAR_TLS_TRUST_CERTS_FILE": str(pki["ca"]),
                                    "PULSAR_TLS_HOSTNAME_VERIFICATION": "false"})
    assert opts["tls_validate_hostname"] is False and "authentication" in opts
    with pytest.raises(ValueError, match="cannot read"):
        pulsar_options_from_env({"PULSAR_AUTH_TOKEN_FILE": str(tmp_path / "missing")})
    assert "authentication" not in pulsar_options_from_env({})


def test_credentials_in_clear_are_warned_about(env: pytest.MonkeyPatch) -> None:
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("KAFKA_SASL_USERNAME", "u")
    env.setenv("KAFKA_SASL_PASSWORD", "p")
    env.setenv("PULSAR_AUTH_TOKEN", "t")
    env.setenv("BROKER_URL", "pulsar://localhost:6650")
    warnings = load_settings().insecure_warnings()
    assert len(warnings) == 2 and "SASL_SSL" in warnings[0] and "pulsar+ssl://" in warnings[1]


def test_the_database_password_comes_from_its_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pw = tmp_path / "pg"
    pw.write_text("db-secret\n")
    env.setenv("DATABASE_PASSWORD_FILE", str(pw))
    env.setenv("DATABASE_URL", "postgresql://saga@localhost:5432/saga_db?sslmode=verify-full")
    cfg = load_settings()
    assert cfg.database_password_value() == "db-secret"
    from snapshots.store import store_from_settings

    store = store_from_settings(cfg)
    assert store._kwargs["password"] == "db-secret"
    assert "db-secret" not in str(store._unavailable(RuntimeError("failed for db-secret")))


@pytest.mark.parametrize(("message", "words"), [
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for '
     'user "saga"', "refused the password"),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  no pg_hba.conf entry for host '
     '"127.0.0.1", user "saga", database "saga_db", no encryption', "refuses connections without TLS"),
    ("connection to server at \"127.0.0.1\", port 5432 failed: SSL error: certificate verify failed",
     "TLS certificate not trusted"),
    ('connection to server at "127.0.0.1", port 5432 failed: server does not support SSL, but SSL was '
     'required', "does not speak TLS"),
])
def test_what_postgresql_refuses_is_said_in_one_line(message: str, words: str) -> None:
    line = postgres_refusal(message)
    assert line is not None and words in line and "\n" not in line


def test_an_unreachable_postgresql_is_no_refusal() -> None:
    assert postgres_refusal('connection to server at "127.0.0.1", port 1 failed: Connection refused') is None


def test_a_trusted_certificate_passes(tls_port: int, pki: dict[str, Path]) -> None:
    check_tls("Kafka", "localhost", tls_port, ssl.create_default_context(cafile=str(pki["ca"])),
              trust="KAFKA_SSL_CAFILE", protocol="KAFKA_SECURITY_PROTOCOL")


def test_an_untrusted_certificate_is_one_line_naming_the_setting(tls_port: int, pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as err:
        check_tls("Kafka", "localhost", tls_port, ssl.create_default_context(cafile=str(pki["other-ca"])),
                  trust="KAFKA_SSL_CAFILE", protocol="KAFKA_SECURITY_PROTOCOL")
    text = str(err.value)
    assert text.startswith(f"Kafka at localhost:{tls_port}: TLS certificate not trusted")
    assert "check KAFKA_SSL_CAFILE" in text and "\n" not in text


def test_a_plaintext_listener_is_named_as_such(plain_port: int, pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as err:
        check_tls("Pulsar", "127.0.0.1", plain_port, ssl.create_default_context(cafile=str(pki["ca"])),
                  trust="PULSAR_TLS_TRUST_CERTS_FILE", protocol="BROKER_URL's scheme")
    assert "no TLS answer there (a plaintext listener?)" in str(err.value)
    assert "BROKER_URL's scheme" in str(err.value)


def test_a_refusal_at_run_time_is_the_ready_reason_without_host_or_user() -> None:
    from snapshots.store import SnapshotStore

    store = SnapshotStore("postgresql://saga:pw@db.internal:5432/saga_db")
    err = store._unavailable(RuntimeError('connection to server at "10.0.0.7", port 5432 failed: FATAL:  '
                                          'password authentication failed for user "saga"'))
    assert err.public.startswith("PostgreSQL refused the password")
    assert "10.0.0.7" not in err.public and '"saga"' not in err.public
    assert store._unavailable(RuntimeError("Connection refused")).public == "PostgreSQL unavailable"
