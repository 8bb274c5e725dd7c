"""The Faust application object, and nothing else: Faust's idiom is one app module that
topics, tables and agents import (streams/, tables/, agents/, bridges/ register themselves on
it); orchestrator/worker.py, the composition root, puts the HTTP API's authentication in front
of its web server and registers the views (orchestrator/web.py `page`). Making the app opens
nothing: Faust connects when the worker starts. Its one timer of its own looks for partitions
whose records stopped short of their agent (runtime/faust_patches.py `reread_stalled`)."""

from __future__ import annotations

from typing import Any

import faust

from runtime.faust_patches import REREAD_CHECK_S, ManualAckEvent, SagaApp, reread_stalled
from runtime.settings import Settings, settings

__all__ = ["WEB_MIDDLEWARES", "app", "cfg", "create_app", "kafka_credentials"]

#: The web server's aiohttp middlewares, copied by aiohttp when Faust makes its web application
#: (at the first view registered): orchestrator/web.py puts the API's authentication here
#: before it registers any view.
WEB_MIDDLEWARES: list[Any] = []


def kafka_credentials(cfg: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's form of KAFKA_SECURITY_PROTOCOL and its credentials (None: PLAINTEXT)."""
    context = cfg.kafka_ssl_context()
    if cfg.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=cfg.kafka_sasl_username, password=cfg.kafka_password(),
                                     ssl_context=context, mechanism=cfg.kafka_sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(cfg: Settings) -> faust.App:
    return SagaApp(
        cfg.app_id,
        # Faust reads its settings from the environment too, and environment wins, under
        # names such as BROKER_URL (ours is Pulsar's) and WEB_PORT. A prefix keeps Faust to
        # FAUST_*; everything below comes from our own validated settings.
        env_prefix="FAUST_",
        broker=cfg.kafka_broker_url,
        # SASL_SSL / SSL / SASL_PLAINTEXT (README, "Security"): every Kafka client Faust makes
        # (consumer, producer, the topic creation's) uses these.
        broker_credentials=kafka_credentials(cfg),
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
        # The API's authentication (orchestrator/auth.py), which orchestrator/web.py puts in
        # WEB_MIDDLEWARES before any view is registered.
        web_application_options={"middlewares": WEB_MIDDLEWARES},
        # Faust's own views: /table/{name}/{key} reads any table's data (the partners' too),
        # /router lists every worker's address. Nothing here needs them: a status request is
        # forwarded to its partition's owner from the assignor's metadata (app.router), not
        # through /router. Off (and, were they turned on, the middleware asks for `operate`).
        web_tables_enabled=False,
        web_router_enabled=False,
        datadir=str(cfg.datadir),
        producer_linger_ms=2,
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=8192,
        fetch_max_wait_ms=cfg.fetch_max_wait_ms,
        # Events a stream skips stay unacknowledged on manual_ack topics (kafka_transport.py).
        Event=ManualAckEvent,
    )


cfg = settings()
app = create_app(cfg)


@app.timer(interval=REREAD_CHECK_S, name="stalled-partitions")
async def _reread_stalled() -> None:
    reread_stalled(app)
