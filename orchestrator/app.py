"""The Faust application object, and nothing else (topics, tables and agents register
themselves on it from streams/, tables/, agents/ and bridges/; see orchestrator/worker.py)."""

from __future__ import annotations

import faust

from orchestrator.config import Settings, settings
from orchestrator.kafka_transport import SagaApp, SagaEvent

__all__ = ["app", "cfg", "create_app"]


def create_app(cfg: Settings) -> faust.App:
    return SagaApp(
        cfg.app_id,
        # Faust reads its settings from the environment too, and environment wins, under
        # names such as BROKER_URL (ours is Pulsar's) and WEB_PORT. A prefix keeps Faust to
        # FAUST_*; everything below comes from our own validated settings.
        env_prefix="FAUST_",
        broker=cfg.kafka_broker_url,
        store=cfg.table_store,
        topic_partitions=cfg.topic_partitions,
        topic_replication_factor=cfg.topic_replication_factor,
        producer_acks=-1,  # all in-sync replicas (Faust's default, said here on purpose)
        # At-least-once with idempotent transitions; Faust's exactly_once has open
        # rebalance bugs (see docs/design.md).
        processing_guarantee="at_least_once",
        # One key serialization for every saga topic and table, so that table routing of
        # a web request hashes the key exactly as the producer of the event did.
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=cfg.session_timeout_s,
        broker_heartbeat_interval=cfg.heartbeat_interval_s,
        broker_rebalance_timeout=max(cfg.session_timeout_s, 10.0),
        table_standby_replicas=1,
        web_host=cfg.web_host,
        web_bind=cfg.web_bind or cfg.web_host,
        web_port=cfg.web_port,
        web_enabled=True,
        datadir=str(cfg.datadir),
        producer_linger_ms=2,
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=8192,
        fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        # Events a stream skips stay unacknowledged on manual_ack topics (kafka_transport.py).
        Event=SagaEvent,
    )


cfg = settings()
app = create_app(cfg)
