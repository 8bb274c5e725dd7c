"""Start-up checks: each service the worker needs, reachable or named in one line."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from orchestrator.config import ConfigError, Settings, redact

__all__ = ["check_pulsar", "check_reachable"]


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
    warnings = []
    db = urlsplit(cfg.database_url)
    if not _reachable(db.hostname or "localhost", db.port or 5432):
        warnings.append(f"DATABASE_URL {db.hostname}:{db.port or 5432} unreachable: "
                        "snapshots wait until it returns")
    return warnings


def kafka_topics(cfg: Settings) -> dict[str, dict[str, str]]:
    """Every Kafka topic the worker uses, with its config (changelogs are compacted)."""
    plain = ("events", "partner-routing", "dead-letters")
    tables = ("sagas", "partner-sagas")
    topics: dict[str, dict[str, str]] = {f"{cfg.app_id}-{t}": {} for t in plain}
    topics.update({f"{cfg.app_id}-{t}-changelog": {"cleanup.policy": "compact"} for t in tables})
    return topics


async def ensure_topics(cfg: Settings) -> None:
    """Create the topics before the consumer subscribes.

    A consumer that subscribes to a topic that does not exist yet only sees it at its next
    metadata refresh (minutes), so a first start would process nothing until then. A topic
    that exists with another partition count is refused: tables would route wrongly.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.kafka_bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        wanted = kafka_topics(cfg)
        existing = set(await admin.list_topics())
        insync = {"min.insync.replicas": str(cfg.min_insync_replicas)} if cfg.min_insync_replicas else {}
        missing = [NewTopic(name, cfg.topic_partitions, cfg.topic_replication_factor,
                            topic_configs={**conf, **insync})
                   for name, conf in wanted.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
        described = await admin.describe_topics(list(wanted))
        for t in described:
            n = len(t.get("partitions", []))
            if n and n != cfg.topic_partitions:
                raise ConfigError(
                    f"Kafka topic {t['topic']} has {n} partitions but TOPIC_PARTITIONS is "
                    f"{cfg.topic_partitions}: use the same count, or a new APP_ID")
    except KafkaError as exc:
        raise ConfigError(f"cannot prepare Kafka topics at {cfg.kafka_bootstrap}: {exc!r}") from None
    finally:
        await admin.close()
