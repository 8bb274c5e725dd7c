"""One asyncio Pulsar client per process, and one batching producer per topic."""

from __future__ import annotations

import asyncio
import logging

import pulsar
import pulsar.asyncio as apulsar

__all__ = ["PulsarLink"]

log = logging.getLogger(__name__)


class PulsarLink:
    def __init__(self, service_url: str) -> None:
        self.service_url = service_url
        self._client: apulsar.Client | None = None
        self._producers: dict[str, apulsar.Producer] = {}
        self._lock = asyncio.Lock()

    @property
    def client(self) -> apulsar.Client:
        if self._client is None:
            self._client = apulsar.Client(
                self.service_url,
                operation_timeout_seconds=10,
                connection_timeout_ms=5000,
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
            )
        return self._client

    @property
    def ready_topics(self) -> set[str]:
        """Topics with a producer created."""
        return set(self._producers)

    async def producer(self, topic: str) -> apulsar.Producer:
        p = self._producers.get(topic)
        if p is not None:
            return p
        async with self._lock:
            if topic not in self._producers:
                self._producers[topic] = await self.client.create_producer(
                    topic,
                    batching_enabled=True,
                    batching_max_messages=1000,
                    batching_max_publish_delay_ms=2,
                    max_pending_messages=10_000,
                    block_if_queue_full=True,
                    send_timeout_millis=30_000,
                )
            return self._producers[topic]

    async def close(self) -> None:
        for p in self._producers.values():
            try:
                await p.flush()
                await p.close()
            except pulsar.PulsarException as exc:  # closing anyway: unsent ones are replayed
                log.warning("closing Pulsar producer %s: %s", p.topic(), exc)
        self._producers.clear()
        if self._client is not None:
            try:
                await self._client.close()
            except pulsar.PulsarException as exc:
                log.warning("closing Pulsar client: %s", exc)
            self._client = None
