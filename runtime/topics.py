"""The worker's Kafka topics, and their creation before anything subscribes (the worker's
preflight, `python -m snapshots`, the benchmarks)."""

from __future__ import annotations

from runtime.settings import ConfigError, Settings

__all__ = ["ensure_topics", "kafka_topics"]


def kafka_topics(cfg: Settings) -> dict[str, dict[str, str]]:
    """Every Kafka topic the worker uses, with its config (changelogs are compacted)."""
    plain = ("events", "partner-routing", "dead-letters")
    tables = ("sagas", "partner-sagas")
    topics: dict[str, dict[str, str]] = {f"{cfg.app_id}-{t}": {} for t in plain}
    # Commands not yet sent on stay as long as the bridge may be held up (a participant's
    # broker down for days): OUTBOX_RETENTION_S, 30 days unless set.
    topics[f"{cfg.app_id}-outbox"] = {"retention.ms": str(int(cfg.outbox_retention_s * 1000))}
    topics.update({f"{cfg.app_id}-{t}-changelog": {"cleanup.policy": "compact"} for t in tables})
    return topics


async def ensure_topics(cfg: Settings) -> None:
    """Create the topics before the consumer subscribes.

    A consumer that subscribes to a topic that does not exist yet only sees it at its next
    metadata refresh (minutes), so a first start would process nothing until then. A topic
    that exists with another partition count is refused: tables would route wrongly.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        KafkaError,
        TopicAlreadyExistsError,
        TopicAuthorizationFailedError,
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.kafka_bootstrap, request_timeout_ms=10000,
                                **cfg.kafka_client_options())
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
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
        who = f" to {cfg.kafka_sasl_username}" if cfg.kafka_sasl_username else ""
        raise ConfigError(f"Kafka at {cfg.kafka_bootstrap}: the ACLs refuse the topics {cfg.app_id}-*{who} "
                          f"({type(exc).__name__}): grant the worker's principal its topics, prefixed "
                          f"{cfg.app_id!r} (README, Security)") from None
    except KafkaError as exc:
        raise ConfigError(f"cannot prepare Kafka topics at {cfg.kafka_bootstrap}: {exc!r}") from None
    finally:
        await admin.close()
