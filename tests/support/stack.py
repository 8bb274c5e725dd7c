"""The local stack as the tests see it: addresses, and a loud failure when a part is missing."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

__all__ = ["KAFKA", "KAFKA_URL", "PG_URL", "PULSAR_ADMIN_URL", "PULSAR_URL", "drop_topics", "require_stack"]

KAFKA_URL = os.environ.get("KAFKA_BROKER_URL", "kafka://127.0.0.1:9092")
KAFKA = f"{urlsplit(KAFKA_URL).hostname}:{urlsplit(KAFKA_URL).port}"
PULSAR_URL = os.environ.get("BROKER_URL", "pulsar://127.0.0.1:6650")
PULSAR_ADMIN_URL = os.environ.get("PULSAR_ADMIN_URL", "http://127.0.0.1:8080")  # its REST admin API
PG_URL = os.environ.get("DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/saga_db")


def _open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 2):
            return True
    except OSError:
        return False


def require_stack() -> None:
    """Raise (never skip) when Kafka, Pulsar or PostgreSQL does not answer."""
    missing = [name for name, url, port in (("Kafka", KAFKA_URL, 9092), ("Pulsar", PULSAR_URL, 6650),
                                            ("PostgreSQL", PG_URL, 5432)) if not _open(url, port)]
    if missing:
        raise RuntimeError(f"the local stack is not up ({', '.join(missing)} not answering): "
                           "run `make dev-up` (make test does it for you)")


async def drop_topics(app_id: str, bootstrap: str = KAFKA) -> None:
    """Delete the Kafka topics `<app_id>-*` of a test, a benchmark or a chaos scenario, so that
    a long session does not leave the one-node broker thousands of partitions to look after.
    Raises aiokafka's KafkaError when Kafka does not answer."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
