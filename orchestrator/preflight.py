"""Start-up checks: each service the worker needs, reachable or named in one line."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from runtime.errors import postgres_refusal
from runtime.settings import ConfigError, Settings, redact
from runtime.topics import ensure_topics

__all__ = ["check_access", "check_pulsar", "check_reachable"]


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_pulsar(cfg: Settings) -> None:
    """Raise ConfigError when Pulsar (BROKER_URL) does not answer."""
    parts = urlsplit(cfg.broker_url)
    host, port = parts.hostname or "localhost", parts.port or 6650
    if not _reachable(host, port):
        raise ConfigError(f"cannot reach BROKER_URL={redact(cfg.broker_url)} ({host}:{port}): "
                          "is the stack up? run `make dev-up`")


def check_reachable(cfg: Settings) -> list[str]:
    """Raise ConfigError for an unreachable Kafka or Pulsar; return warnings for the rest."""
    for name, url, default in (("KAFKA_BROKER_URL", cfg.kafka_broker_url.split(";")[0], 9092),
                               ("BROKER_URL", cfg.broker_url, 6650)):
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or default
        if not _reachable(host, port):
            raise ConfigError(f"cannot reach {name}={redact(url)} ({host}:{port}): is the stack up? "
                              "run `make dev-up`")
    return []  # PostgreSQL: check_postgres


# ---------------------------------------------------------------- credentials and TLS
# Each service is asked once, the way the worker will speak to it, before Faust starts: a wrong
# password, an untrusted certificate, a refused ACL or token stops the worker with one line
# naming the service and the reason (TROUBLESHOOTING.md has each one with its fix).

def _tls_reason(exc: BaseException, trust: str, protocol: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}): check {trust}"
    text = str(exc)
    if isinstance(exc, ssl.SSLEOFError) or "WRONG_VERSION_NUMBER" in text or "UNEXPECTED_EOF" in text:
        return f"no TLS answer there (a plaintext listener?): check {protocol}"
    return f"TLS handshake failed ({text}): check {trust}"


def check_tls(service: str, host: str, port: int, context: ssl.SSLContext, *, trust: str,
              protocol: str) -> None:
    """Raise ConfigError naming `service` when a TLS handshake with host:port fails (an
    untrusted or mismatched certificate, or a server that does not speak TLS there); `trust`
    and `protocol` name the settings to check for each."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return
    except ssl.SSLError as exc:
        raise ConfigError(f"{service} at {host}:{port}: {_tls_reason(exc, trust, protocol)}") from None
    except (TimeoutError, ConnectionResetError, BrokenPipeError):
        raise ConfigError(f"{service} at {host}:{port}: no TLS answer there (a plaintext listener?): "
                          f"check {protocol}") from None
    except OSError as exc:
        raise ConfigError(f"{service} at {host}:{port}: cannot connect ({exc.strerror or exc})") from None


async def check_kafka(cfg: Settings) -> str | None:
    """One connection as the worker makes them (TLS, SASL), then what its ACLs must allow: the
    topics (ensure_topics) and the consumer group."""
    from aiokafka import errors as kerr
    from aiokafka.conn import create_conn

    first = cfg.kafka_bootstrap.split(",")[0]
    host, port = first.rsplit(":", 1)
    context = cfg.kafka_ssl_context()
    if context is not None:
        check_tls("Kafka", host, int(port), context, trust="KAFKA_SSL_CAFILE",
                  protocol="KAFKA_SECURITY_PROTOCOL")
    opts = cfg.kafka_client_options()
    user = f" as {cfg.kafka_sasl_username}" if cfg.kafka_sasl_username else ""
    try:
        conn = await asyncio.wait_for(create_conn(
            host, int(port), request_timeout_ms=10000, ssl_context=opts.get("ssl_context"),
            security_protocol=opts["security_protocol"], sasl_mechanism=opts.get("sasl_mechanism", "PLAIN"),
            sasl_plain_username=opts.get("sasl_plain_username"),
            sasl_plain_password=opts.get("sasl_plain_password")), timeout=15)
        conn.close()
    except (kerr.AuthenticationFailedError, kerr.SaslAuthenticationFailed) as exc:
        raise ConfigError(f"Kafka at {first} refused the credentials{user} ({cfg.kafka_sasl_mechanism}): "
                          f"{_first_line(exc)}: check KAFKA_SASL_USERNAME and "
                          "KAFKA_SASL_PASSWORD_FILE") from None
    except kerr.UnsupportedSaslMechanismError as exc:
        raise ConfigError(f"Kafka at {first} does not offer {cfg.kafka_sasl_mechanism}: {_first_line(exc)}: "
                          "check KAFKA_SASL_MECHANISM") from None
    except ssl.SSLError as exc:
        raise ConfigError(f"Kafka at {first}: "
                          f"{_tls_reason(exc, 'KAFKA_SSL_CAFILE', 'KAFKA_SECURITY_PROTOCOL')}") from None
    except (TimeoutError, kerr.KafkaError, OSError) as exc:
        raise ConfigError(f"Kafka at {first} closed the connection{user} "
                          f"(KAFKA_SECURITY_PROTOCOL={cfg.kafka_security_protocol}): {_first_line(exc)}: "
                          "does the listener expect another protocol (SASL_SSL, SSL)?") from None
    await ensure_topics(cfg)
    return await _check_group(cfg, first, user, opts)


#: Kafka's answers while the group coordinator is not there yet (a fresh cluster creates
#: __consumer_offsets on the first group lookup) or moves: asked again, not reported.
_COORDINATOR_WAIT_S = 30.0


async def _check_group(cfg: Settings, first: str, user: str, opts: dict[str, Any]) -> str | None:
    """ConfigError when the ACLs refuse the worker its consumer group; a warning when the group
    coordinator did not answer within _COORDINATOR_WAIT_S (Faust waits for it too)."""
    from aiokafka import errors as kerr
    from aiokafka.admin import AIOKafkaAdminClient

    transient = (kerr.GroupCoordinatorNotAvailableError, kerr.NotCoordinatorForGroupError,
                 kerr.CoordinatorLoadInProgressError, kerr.RequestTimedOutError)
    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.kafka_bootstrap, request_timeout_ms=10000, **opts)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _COORDINATOR_WAIT_S
    try:
        await admin.start()
        while True:
            try:
                await admin.describe_consumer_groups([cfg.app_id])
                return None
            except transient as exc:
                if loop.time() >= deadline:
                    return (f"Kafka at {first}: the coordinator of consumer group {cfg.app_id!r} did not "
                            f"answer within {_COORDINATOR_WAIT_S:.0f}s ({type(exc).__name__}): the worker "
                            "waits for it")
                await asyncio.sleep(0.5)
    except kerr.GroupAuthorizationFailedError:
        raise ConfigError(f"Kafka at {first}: the ACLs refuse consumer group {cfg.app_id!r} to the "
                          f"worker{user}: grant it (README, Security)") from None
    except kerr.KafkaError as exc:
        raise ConfigError(f"Kafka at {first}: cannot describe consumer group {cfg.app_id!r}{user}: "
                          f"{_first_line(exc)}") from None
    finally:
        await admin.close()


def check_pulsar_access(cfg: Settings) -> None:
    """A TLS handshake (pulsar+ssl://), then a topic lookup with the worker's token: what Pulsar
    refuses (authentication, authorization) is named in one line.

    It runs in a child process. The Pulsar client library keeps the first logger any client
    of a process is given, for every later client: this check's (a Python logger at DEBUG,
    keeping each line in memory to read the broker's refusal back) then served the worker's
    own client, a Python call for each line the C++ client logs at every send (a tenth of the
    outbound bridge's time in a profile, #23) and a list that grew for the life of the worker."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        refusal = pool.submit(_pulsar_refusal, cfg).result()
    if refusal is not None:
        raise ConfigError(refusal)


def _pulsar_refusal(cfg: Settings) -> str | None:
    """In the child: `_check_pulsar_access`'s refusal, or None."""
    try:
        _check_pulsar_access(cfg)
    except ConfigError as exc:
        return str(exc)
    return None


def _check_pulsar_access(cfg: Settings) -> None:
    import pulsar

    parts = urlsplit(cfg.broker_url)
    host, port = parts.hostname or "localhost", parts.port or 6650
    if parts.scheme == "pulsar+ssl":
        context = ssl.create_default_context(cafile=str(cfg.pulsar_tls_trust_certs_file)
                                             if cfg.pulsar_tls_trust_certs_file else None)
        context.check_hostname = cfg.pulsar_tls_hostname_verification
        check_tls("Pulsar", host, port, context, trust="PULSAR_TLS_TRUST_CERTS_FILE",
                  protocol="BROKER_URL's scheme (pulsar:// or pulsar+ssl://)")
    # The client's own log is read back: a broker that refuses a token answers CONNECT with an
    # ERROR and closes, and the client retries until its timeout without saying why.
    said = _Said()
    log = logging.getLogger("saga.preflight.pulsar")
    log.addHandler(said)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    client = pulsar.Client(cfg.broker_url, operation_timeout_seconds=10, connection_timeout_ms=5000,
                           logger=log, **cfg.pulsar_client_options())
    topic = cfg.pulsar_topic(cfg.partner_events_topic)
    refused = (f"Pulsar at {host}:{port} refused the authentication: check PULSAR_AUTH_TOKEN_FILE (a token "
               "the broker's secret or key signed, not expired)")
    try:
        client.get_topic_partitions(topic)
    except pulsar.AuthenticationError:
        raise ConfigError(refused) from None
    except pulsar.Timeout:
        if said.refused_connect():
            raise ConfigError(refused) from None
        raise ConfigError(f"Pulsar at {host}:{port} did not answer a topic lookup within 10s") from None
    except pulsar.AuthorizationError:
        raise ConfigError(f"Pulsar at {host}:{port}: the token's role may not use {topic}: grant it "
                          "produce and consume on the namespace (README, Security)") from None
    except pulsar.PulsarException as exc:
        raise ConfigError(f"Pulsar at {host}:{port}: {type(exc).__name__}: {_first_line(exc)} (a "
                          "plaintext pulsar:// URL against a TLS port, or the reverse, closes the "
                          "connection)") from None
    finally:
        client.close()
        log.removeHandler(said)


class _Said(logging.Handler):
    """What the Pulsar client logged (only its words, kept in memory for this check)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def refused_connect(self) -> bool:
        return any("Handling incoming command: ERROR" in line for line in self.lines) and \
            not any("Handling incoming command: CONNECTED" in line for line in self.lines)


def check_postgres(cfg: Settings) -> str | None:
    """None when PostgreSQL accepts the worker, a warning when it cannot be reached (snapshots
    wait for it); ConfigError when it answers and refuses (credentials, TLS, pg_hba)."""
    import psycopg

    db = urlsplit(cfg.database_url)
    kwargs: dict[str, Any] = {"connect_timeout": 5}
    password = cfg.database_password_value()
    if password is not None:
        kwargs["password"] = password
    try:
        with psycopg.connect(cfg.database_url, **kwargs):
            return None
    except psycopg.OperationalError as exc:
        refusal = postgres_refusal(str(exc))
        where = f"{db.hostname}:{db.port or 5432}"
        if refusal is None:
            return f"DATABASE_URL {where} unreachable: snapshots wait until it returns"
        raise ConfigError(f"PostgreSQL at {where} {refusal}") from None


def check_access(cfg: Settings) -> list[str]:
    """Every service, as the worker speaks to it; return the warnings for the start-up log."""
    warnings = check_reachable(cfg)
    check_pulsar_access(cfg)
    kafka = asyncio.run(check_kafka(cfg))
    pg = check_postgres(cfg)
    return warnings + [w for w in (kafka, pg) if w] + cfg.insecure_warnings()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
