"""Settings from the environment, validated once at start-up.

The first version's variables keep their names and meanings (BROKER_URL is Pulsar,
DATABASE_URL is PostgreSQL, INTEGRACIONES_API_URL and ALIANZAS_API_URL name the two
participant services). A bad value stops the process with one line naming the variable:
see `load_settings`.
"""

from __future__ import annotations

import os
import re
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.sealing import Sealer, new_key, parse_keys
from common.security import kafka_client_options, pulsar_client_options, read_secret, ssl_context

__all__ = ["API_ROLES", "MIN_TOKEN_LENGTH", "ConfigError", "Settings", "load_settings", "settings"]

#: The HTTP API's roles (orchestrator/auth.py): `read` the sagas (personal data masked),
#: `start` sagas, `operate` on them (retry, cancel; personal data in clear).
API_ROLES = ("read", "start", "operate")
MIN_TOKEN_LENGTH = 16
#: What a bearer token may hold (RFC 6750's b64token, plus nothing that needs quoting).
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


class ConfigError(SystemExit):
    """A setting is malformed; the message is the one line shown to the operator."""


def redact(url: str) -> str:
    """`url` with the password of its user part replaced by ***: for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        password = None
        parts = None
    if parts is None or not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


def _check_url(value: str, schemes: tuple[str, ...], name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{name} must look like {schemes[0]}://host:port, got {redact(value)!r}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise ValueError(f"{name} has a bad port: {redact(value)!r}") from exc
    return value


def parse_tokens(text: str) -> list[str]:
    """The tokens of a variable or a token file: separated by commas, spaces or newlines;
    a line starting with # is a comment. Each is checked (length, characters); an error
    says which one by its place, never the token itself."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    tokens = [t for t in re.split(r"[\s,]+", "\n".join(lines)) if t]
    for n, token in enumerate(tokens, 1):
        where = f"token {n} of {len(tokens)}" if len(tokens) > 1 else "the token"
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"{where} is shorter than {MIN_TOKEN_LENGTH} characters")
        if not _TOKEN.match(token):
            raise ValueError(f"{where} has a character other than letters, digits and ._~+/=-")
    return tokens


def read_token_file(path: Path) -> list[str]:
    """The tokens of a token file (a Docker or Kubernetes secret): at least one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    tokens = parse_tokens(text)
    if not tokens:
        raise ValueError(f"no token in {path}")
    return tokens


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # The first version's variables.
    broker_url: str = Field("pulsar://localhost:6650", alias="BROKER_URL")
    database_url: str = Field(
        "postgresql://postgres:postgres@localhost:5432/saga_db", alias="DATABASE_URL"
    )
    snapshot_schema: str = Field("public", alias="SNAPSHOT_SCHEMA", min_length=1, max_length=63,
                                 pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    # The HTTP API's bearer tokens (README, "Security"): OPERATOR_TOKEN holds every role;
    # API_<ROLE>_TOKENS one role each. Every one of them takes a comma-separated list (two
    # tokens while one is rotated), and also comes from a file, *_FILE (a Docker or Kubernetes
    # secret). No token at all: the API answers 401 to everyone, unless API_AUTH=open.
    operator_token: str | None = Field(None, alias="OPERATOR_TOKEN", repr=False)
    operator_token_file: Path | None = Field(None, alias="OPERATOR_TOKEN_FILE")
    api_read_tokens: str | None = Field(None, alias="API_READ_TOKENS", repr=False)
    api_read_tokens_file: Path | None = Field(None, alias="API_READ_TOKENS_FILE")
    api_start_tokens: str | None = Field(None, alias="API_START_TOKENS", repr=False)
    api_start_tokens_file: Path | None = Field(None, alias="API_START_TOKENS_FILE")
    api_operate_tokens: str | None = Field(None, alias="API_OPERATE_TOKENS", repr=False)
    api_operate_tokens_file: Path | None = Field(None, alias="API_OPERATE_TOKENS_FILE")
    # `token`: every /api route and /dashboard need a bearer token; `open`: anyone is every
    # role (a local experiment only: a WARNING line at start-up says so).
    api_auth: str = Field("token", alias="API_AUTH", pattern=r"^(token|open)$")
    integraciones_api_url: str = Field("http://localhost:5001", alias="INTEGRACIONES_API_URL")
    alianzas_api_url: str = Field("http://localhost:5002", alias="ALIANZAS_API_URL")

    # Which participant services the orchestrator drives (README, "Participant profiles"):
    # `contract`, this project's CloudEvents contract on Pulsar; `alpes`, the Alpes services
    # as they are (HTTP, Avro and JSON topics), with their own saga definition.
    participants: str = Field("contract", alias="PARTICIPANTS", pattern=r"^(contract|alpes)$")
    # alpes: how a partner is created, integraciones' HTTP API or its Avro command on Pulsar.
    integraciones_transport: str = Field("http", alias="INTEGRACIONES_TRANSPORT", pattern=r"^(http|pulsar)$")
    alpes_partner_creado_topic: str = Field("PartnerCreado", alias="ALPES_PARTNER_CREADO_TOPIC")
    alpes_comando_crear_partner_topic: str = Field("comando-crear-partner",
                                                   alias="ALPES_COMANDO_CREAR_PARTNER_TOPIC")
    alpes_contrato_creado_topic: str = Field("ContratoCreado", alias="ALPES_CONTRATO_CREADO_TOPIC")
    alpes_contrato_aprobado_topic: str = Field("contrato-aprobado", alias="ALPES_CONTRATO_APROBADO_TOPIC")
    alpes_contrato_rechazado_topic: str = Field("contrato-rechazado", alias="ALPES_CONTRATO_RECHAZADO_TOPIC")
    alpes_contract_timeout_s: float = Field(60.0, alias="ALPES_CONTRACT_TIMEOUT_S", gt=0)
    alpes_compliance_timeout_s: float = Field(60.0, alias="ALPES_COMPLIANCE_TIMEOUT_S", gt=0)
    # Calls to the participants' HTTP APIs: each try's timeout, and tries per call (5xx and
    # connection errors are retried with backoff; the saga's own retries come on top).
    http_timeout_s: float = Field(5.0, alias="PARTICIPANT_HTTP_TIMEOUT_S", gt=0, le=300)
    http_attempts: int = Field(3, alias="PARTICIPANT_HTTP_ATTEMPTS", ge=1, le=20)
    # Calls to the Alpes services carried out at once (bridges/alpes.py); the others wait
    # their turn (none is dropped), and past BRIDGE_MAX_IN_FLIGHT waiting the saga agent waits.
    alpes_max_concurrent_calls: int = Field(32, alias="ALPES_MAX_CONCURRENT_CALLS", ge=1, le=10_000)

    # Kafka, where Faust keeps its streams and tables.
    kafka_broker_url: str = Field("kafka://localhost:9092", alias="KAFKA_BROKER_URL")
    app_id: str = Field("saga-orchestrator", alias="APP_ID", min_length=1)
    topic_partitions: int = Field(8, alias="TOPIC_PARTITIONS", ge=1, le=1024)
    # Replicas of every Kafka topic the worker creates (a multi-broker cluster: 3). With more
    # than one, min.insync.replicas is set on them too (TOPIC_MIN_INSYNC_REPLICAS, default
    # RF - 1 capped at 2), and Faust produces with acks=all.
    topic_replication_factor: int = Field(1, alias="TOPIC_REPLICATION_FACTOR", ge=1, le=7)
    topic_min_insync_replicas: int | None = Field(None, alias="TOPIC_MIN_INSYNC_REPLICAS", ge=1, le=7)
    table_store: str = Field("rocksdb://", alias="TABLE_STORE")
    session_timeout_s: float = Field(10.0, alias="KAFKA_SESSION_TIMEOUT", gt=1, le=300)
    heartbeat_interval_s: float = Field(1.0, alias="KAFKA_HEARTBEAT_INTERVAL", gt=0, le=30)
    # The consumer's fetch long-poll; it bounds how long a busy partition's next records can
    # wait behind a fetch of the quiet ones (runtime/faust_patches.py).
    fetch_max_wait_ms: int = Field(50, alias="KAFKA_FETCH_MAX_WAIT_MS", ge=1, le=30_000)

    # Brokers and database over TLS, with credentials (README, "Security"). Every secret is
    # given inline or, preferred, as a file (*_FILE: a Docker or Kubernetes secret).
    kafka_security_protocol: str = Field("PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL",
                                         pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = Field("SCRAM-SHA-512", alias="KAFKA_SASL_MECHANISM",
                                      pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: str | None = Field(None, alias="KAFKA_SASL_PASSWORD", repr=False)
    kafka_sasl_password_file: Path | None = Field(None, alias="KAFKA_SASL_PASSWORD_FILE")
    kafka_ssl_cafile: Path | None = Field(None, alias="KAFKA_SSL_CAFILE")  # None: the system's CAs
    kafka_ssl_certfile: Path | None = Field(None, alias="KAFKA_SSL_CERTFILE")  # a client certificate (mTLS)
    kafka_ssl_keyfile: Path | None = Field(None, alias="KAFKA_SSL_KEYFILE")
    # Pulsar: TLS is BROKER_URL=pulsar+ssl://...; these say whom to trust and who we are.
    pulsar_tls_trust_certs_file: Path | None = Field(None, alias="PULSAR_TLS_TRUST_CERTS_FILE")
    pulsar_tls_hostname_verification: bool = Field(True, alias="PULSAR_TLS_HOSTNAME_VERIFICATION")
    pulsar_auth_token: str | None = Field(None, alias="PULSAR_AUTH_TOKEN", repr=False)
    pulsar_auth_token_file: Path | None = Field(None, alias="PULSAR_AUTH_TOKEN_FILE")
    # PostgreSQL: TLS through DATABASE_URL's own parameters (sslmode=verify-full&sslrootcert=...);
    # the password here keeps it out of the URL.
    database_password: str | None = Field(None, alias="DATABASE_PASSWORD", repr=False)
    database_password_file: Path | None = Field(None, alias="DATABASE_PASSWORD_FILE")
    # Dead letters show a message with the partner's personal data masked and keep the original
    # sealed with these Fernet keys (common/sealing.py; the first seals, all unseal). Unset:
    # a key generated once in DATADIR/dead-letter.key. Several workers: give them the same key.
    dead_letter_keys: str | None = Field(None, alias="DEAD_LETTER_KEYS", repr=False)
    dead_letter_keys_file: Path | None = Field(None, alias="DEAD_LETTER_KEYS_FILE")

    # The worker's web server (table views, health).
    web_host: str = Field("127.0.0.1", alias="WEB_HOST")  # advertised to other workers
    web_bind: str | None = Field(None, alias="WEB_BIND")  # interface to listen on (default WEB_HOST)
    web_port: int = Field(6066, alias="WEB_PORT", ge=1, le=65535)
    datadir: Path = Field(Path(".stack/workers/default"), alias="DATADIR")

    # Pulsar topics (persistent://public/default/NAME unless given in full).
    partner_events_topic: str = Field("partner-events", alias="PARTNER_EVENTS_TOPIC")
    alliance_events_topic: str = Field("alliance-events", alias="ALLIANCE_EVENTS_TOPIC")
    integraciones_commands_topic: str = Field(
        "integraciones-commands", alias="INTEGRACIONES_COMMANDS_TOPIC"
    )
    alianzas_commands_topic: str = Field("alianzas-commands", alias="ALIANZAS_COMMANDS_TOPIC")
    lifecycle_topic: str = Field("saga-lifecycle", alias="SAGA_LIFECYCLE_TOPIC")
    dead_letter_topic: str = Field("saga-dead-letters", alias="DEAD_LETTER_TOPIC")
    subscription: str = Field("saga-orchestrator", alias="PULSAR_SUBSCRIPTION")
    bridge_max_in_flight: int = Field(2000, alias="BRIDGE_MAX_IN_FLIGHT", ge=1, le=100_000)
    # How long the outbox topic keeps commands (bridges/outbox.py): longer than any outage of
    # a participant's broker you would wait out.
    outbox_retention_s: float = Field(30 * 86400.0, alias="OUTBOX_RETENTION_S", ge=3600)
    # The saga agent's batches (agents/partner_saga.py): at most this many events, gathered
    # for at most this long.
    saga_batch_max: int = Field(500, alias="SAGA_BATCH_MAX", ge=1, le=10_000)
    saga_batch_within_s: float = Field(0.005, alias="SAGA_BATCH_WITHIN_S", gt=0, le=1.0)
    # Decoded saga states kept for the sagas' next events (~15 KB each).
    saga_state_cache: int = Field(1024, alias="SAGA_STATE_CACHE", ge=1, le=1_000_000)

    # Step policies: how long a step waits for its reply, how often it is tried, and the
    # backoff between tries of a failed undo. Per-action values override the defaults.
    reply_timeout_s: float = Field(30.0, alias="SAGA_REPLY_TIMEOUT_S", gt=0)
    max_attempts: int = Field(3, alias="SAGA_MAX_ATTEMPTS", ge=1, le=100)
    undo_max_attempts: int = Field(5, alias="SAGA_UNDO_MAX_ATTEMPTS", ge=1, le=100)
    backoff_s: float = Field(1.0, alias="SAGA_BACKOFF_S", ge=0)
    backoff_max_s: float = Field(60.0, alias="SAGA_BACKOFF_MAX_S", ge=0)
    create_partner_timeout_s: float | None = Field(None, alias="SAGA_CREATE_PARTNER_TIMEOUT_S", gt=0)
    create_alliance_timeout_s: float | None = Field(None, alias="SAGA_CREATE_ALLIANCE_TIMEOUT_S", gt=0)
    revert_partner_timeout_s: float | None = Field(None, alias="SAGA_REVERT_PARTNER_TIMEOUT_S", gt=0)
    cancel_alliance_timeout_s: float | None = Field(None, alias="SAGA_CANCEL_ALLIANCE_TIMEOUT_S", gt=0)
    deadline_tick_s: float = Field(0.2, alias="DEADLINE_TICK_S", gt=0, le=10)
    # How long a finished saga stays in the live tables (Temporal's retention period is the
    # model): after it, and once its final state is in PostgreSQL, it leaves them, a compact
    # tombstone kept in its place; the status endpoint then answers from the snapshot. A
    # saga in compensation_failed (waiting for a person) never leaves (domain.lifecycle).
    saga_retention_s: float = Field(7 * 86400.0, alias="SAGA_RETENTION_S", gt=0)
    retention_tick_s: float = Field(5.0, alias="RETENTION_TICK_S", gt=0, le=3600)
    # How long after a saga's end a new start for its business key (correlation id, partner)
    # is a duplicate of it; after that a start opens the key's next saga, with an id of its
    # own (domain.lifecycle). Far longer than SAGA_RETENTION_S: the tombstones answer.
    saga_dedupe_horizon_s: float = Field(90 * 86400.0, alias="SAGA_DEDUPE_HORIZON_S", gt=0)

    # Where the worker's snapshot mirror runs: `process`, a child process the worker starts
    # and restarts (another core; the worker's event loop is the saga agent's); `inline`, on
    # the worker's event loop; `off`, not at all (run `python -m snapshots mirror` yourself).
    snapshot_mirror: str = Field("process", alias="SNAPSHOT_MIRROR", pattern=r"^(process|inline|off)$")
    # Where the outbox bridge (bridges/outbox.py: the outbox to Pulsar and the participants'
    # APIs) runs: `process`, a child process the worker starts and restarts (another core:
    # the saga agent's event loop never runs a Pulsar send); `inline`, on the worker's loop.
    outbox_bridge: str = Field("process", alias="OUTBOX_BRIDGE", pattern=r"^(process|inline)$")
    # Where the inbound bridge (bridges/pulsar_inbound.py: the participants' Pulsar topics to
    # Kafka) runs: `process`, in that same child process (started for either bridge);
    # `inline`, on the worker's loop.
    inbound_bridge: str = Field("process", alias="INBOUND_BRIDGE", pattern=r"^(process|inline)$")
    # PostgreSQL's own retention (snapshots/store.py `prune`): a finished saga's history rows
    # go, and its row loses the partner's personal data, this long after its end; the row
    # (ids, end status, generation) stays. compensation_failed and live sagas are never pruned.
    snapshot_retention_s: float = Field(90 * 86400.0, alias="SNAPSHOT_RETENTION_S", gt=0)
    snapshot_prune_every_s: float = Field(300.0, alias="SNAPSHOT_PRUNE_EVERY_S", gt=0)
    snapshot_prune_batch: int = Field(1000, alias="SNAPSHOT_PRUNE_BATCH", ge=1, le=100_000)
    # How old the per-status counts (GET /api/v1/sagas/counts, the dashboard) may be: every
    # caller within that time shares one query.
    snapshot_counts_max_age_s: float = Field(2.0, alias="SNAPSHOT_COUNTS_MAX_AGE_S", ge=0, le=3600)

    # The worker's event loop: uvloop (default) or the standard library's asyncio loop.
    event_loop: str = Field("uvloop", alias="EVENT_LOOP", pattern=r"^(uvloop|asyncio)$")

    @field_validator("operator_token", "api_read_tokens", "api_start_tokens", "api_operate_tokens",
                     mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> str | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None  # unset, or set empty (a compose file's ${VAR:-})
        return ",".join(parse_tokens(str(v))) or None

    @field_validator("operator_token_file", "api_read_tokens_file", "api_start_tokens_file",
                     "api_operate_tokens_file", mode="before")
    @classmethod
    def _token_file_set(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("operator_token_file", "api_read_tokens_file", "api_start_tokens_file",
                     "api_operate_tokens_file")
    @classmethod
    def _token_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            read_token_file(v)  # readable, and every token in it valid: checked at start-up
        return v

    @field_validator("kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file",
                     "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     "pulsar_tls_trust_certs_file", "pulsar_auth_token", "pulsar_auth_token_file",
                     "database_password", "database_password_file", "dead_letter_keys",
                     "dead_letter_keys_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v  # a compose file's ${VAR:-}

    @field_validator("kafka_sasl_password_file", "pulsar_auth_token_file", "database_password_file")
    @classmethod
    def _secret_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            read_secret(v)  # readable and not empty: checked at start-up
        return v

    @field_validator("dead_letter_keys")
    @classmethod
    def _fernet_keys(cls, v: str | None) -> str | None:
        if v is not None:
            Sealer(parse_keys(v))  # each a Fernet key; the error names which one, not its value
        return v

    @field_validator("dead_letter_keys_file")
    @classmethod
    def _fernet_keys_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            Sealer(parse_keys(read_secret(v)))
        return v

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     "pulsar_tls_trust_certs_file")
    @classmethod
    def _readable_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            try:
                with v.open("rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {v}: {exc.strerror or exc}") from None
        return v

    @model_validator(mode="after")
    def _credentials_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                                 "needs KAFKA_SASL_USERNAME")
            if not (self.kafka_sasl_password or self.kafka_sasl_password_file):
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                                 "KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")
        if self.kafka_ssl_certfile:
            try:
                ssl_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError("KAFKA_SSL_CERTFILE/KEYFILE: cannot load the client certificate: "
                                 f"{exc}") from None
        return self

    @field_validator("broker_url")
    @classmethod
    def _pulsar(cls, v: str) -> str:
        return _check_url(v, ("pulsar", "pulsar+ssl"), "BROKER_URL")

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, v: str) -> str:
        return _check_url(v, ("postgresql", "postgres"), "DATABASE_URL")

    @field_validator("integraciones_api_url", "alianzas_api_url")
    @classmethod
    def _http(cls, v: str) -> str:
        return _check_url(v, ("http", "https"), "participant API URL")

    @field_validator("kafka_broker_url")
    @classmethod
    def _kafka(cls, v: str) -> str:
        for one in v.split(";"):
            _check_url(one, ("kafka", "aiokafka"), "KAFKA_BROKER_URL")
        return v

    @field_validator("table_store")
    @classmethod
    def _store(cls, v: str) -> str:
        # The deadline index needs RocksDB's ordered keys (tables/deadline_index.py).
        if v != "rocksdb://":
            raise ValueError(f"TABLE_STORE must be rocksdb://, got {v!r}")
        return v

    @field_validator("saga_dedupe_horizon_s", "snapshot_retention_s")
    @classmethod
    def _after_retention(cls, v: float, info: ValidationInfo) -> float:
        # A saga leaves the live tables before its dedupe horizon ends (its tombstone answers)
        # and before PostgreSQL prunes it (its snapshot answers for it meanwhile).
        retention = info.data.get("saga_retention_s")
        if retention is not None and v < retention:
            raise ValueError(f"must be at least SAGA_RETENTION_S ({retention:g}), got {v:g}")
        return v

    def install_event_loop(self) -> None:
        """Make new event loops uvloop's when EVENT_LOOP=uvloop: most of a worker's CPU is
        the loop's own machinery (callbacks, sockets, futures) in Faust, aiokafka and the
        Pulsar client; uvloop does that work in C (docs/design.md, "Throughput")."""
        if self.event_loop == "uvloop":
            import asyncio

            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    @property
    def min_insync_replicas(self) -> int | None:
        """min.insync.replicas for the topics the worker creates (None: the broker's)."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return min(2, self.topic_replication_factor - 1) if self.topic_replication_factor > 1 else None

    def api_tokens(self) -> dict[str, frozenset[str]]:
        """Every configured bearer token and its roles (OPERATOR_TOKEN and OPERATOR_TOKEN_FILE:
        every role; a token given under several roles has them all). Read from the variables
        and the token files, which the settings' validation has checked already."""
        out: dict[str, set[str]] = {}
        sources = (
            (API_ROLES, self.operator_token, self.operator_token_file, "OPERATOR_TOKEN_FILE"),
            (("read",), self.api_read_tokens, self.api_read_tokens_file, "API_READ_TOKENS_FILE"),
            (("start",), self.api_start_tokens, self.api_start_tokens_file, "API_START_TOKENS_FILE"),
            (("operate",), self.api_operate_tokens, self.api_operate_tokens_file, "API_OPERATE_TOKENS_FILE"),
        )
        for roles, listed, path, name in sources:
            tokens = parse_tokens(listed or "")
            if path is not None:
                try:
                    tokens += read_token_file(path)
                except ValueError as exc:  # changed since start-up
                    raise ConfigError(f"configuration error: {name}: {exc}") from None
            for token in tokens:
                out.setdefault(token, set()).update(roles)
        return {token: frozenset(roles) for token, roles in out.items()}

    def pulsar_topic(self, name: str) -> str:
        return name if "://" in name else f"persistent://public/default/{name}"

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for Kafka (None for PLAINTEXT and SASL_PLAINTEXT)."""
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        return ssl_context(self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)

    def kafka_password(self) -> str | None:
        if self.kafka_sasl_password_file is not None:
            return read_secret(self.kafka_sasl_password_file)
        return self.kafka_sasl_password

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for the aiokafka clients that are not Faust's (preflight, the
        snapshot mirror and tools): the same security as the Faust app's."""
        return kafka_client_options(self.kafka_security_protocol, mechanism=self.kafka_sasl_mechanism,
                                    username=self.kafka_sasl_username, password=self.kafka_password(),
                                    context=self.kafka_ssl_context())

    def pulsar_client_options(self) -> dict[str, Any]:
        """Keyword arguments for `pulsar.Client` / `pulsar.asyncio.Client`."""
        return pulsar_client_options(trust_certs_file=self.pulsar_tls_trust_certs_file,
                                     hostname_verification=self.pulsar_tls_hostname_verification,
                                     token=self.pulsar_auth_token, token_file=self.pulsar_auth_token_file)

    def database_password_value(self) -> str | None:
        """The password for DATABASE_URL's user when it is not in the URL (None: the URL's,
        libpq's PGPASSWORD or ~/.pgpass)."""
        if self.database_password_file is not None:
            return read_secret(self.database_password_file)
        return self.database_password

    def dead_letter_keys_list(self, *, create: bool = False) -> list[str]:
        """The keys of dead letters' originals: DEAD_LETTER_KEYS(_FILE), else the key in
        DATADIR/dead-letter.key, made there (mode 600) when `create` and it is missing."""
        if self.dead_letter_keys_file is not None:
            return parse_keys(read_secret(self.dead_letter_keys_file))
        if self.dead_letter_keys:
            return parse_keys(self.dead_letter_keys)
        path = self.datadir / "dead-letter.key"
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_key() + "\n")
        return parse_keys(read_secret(path))

    def dead_letter_sealer(self, *, create: bool = False) -> Sealer:
        """The sealer of dead letters' originals, with `dead_letter_keys_list`."""
        return Sealer(self.dead_letter_keys_list(create=create))

    def insecure_warnings(self) -> list[str]:
        """Lines for the start-up log: credentials that would travel in clear."""
        out = []
        if self.kafka_security_protocol == "SASL_PLAINTEXT":
            out.append("KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the Kafka password and data travel "
                       "unencrypted; use SASL_SSL")
        if (self.pulsar_auth_token or self.pulsar_auth_token_file) and self.broker_url.startswith("pulsar://"):
            out.append("PULSAR_AUTH_TOKEN over pulsar:// travels unencrypted; use pulsar+ssl://")
        return out

    @property
    def kafka_bootstrap(self) -> str:
        """host:port[,host:port] for clients that are not Faust."""
        return ",".join(
            f"{urlsplit(u).hostname}:{urlsplit(u).port or 9092}"
            for u in self.kafka_broker_url.split(";")
        )


def load_settings() -> Settings:
    """Read the environment; a bad value raises ConfigError carrying one readable line."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        loc = first.get("loc") or ()
        if not loc:  # a check across settings: its message names them
            raise ConfigError(f"configuration error: {msg}") from None
        field = loc[0]
        alias = Settings.model_fields[str(field)].alias if str(field) in Settings.model_fields else field
        raise ConfigError(f"configuration error: {alias}: {msg}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
