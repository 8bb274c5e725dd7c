"""Faust's aiokafka transport with a short fetch long-poll, and a cheaper producer path.

Faust creates its worker consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka keeps at
most one fetch request in flight per broker, and a request names only the partitions that
had no unconsumed records when it was built. A partition whose records were still being
processed then waits for that request to come back before it can be fetched again: up to
the full long-poll when the other partitions are quiet. Under a burst (500 deadlines firing
in one tick) this stalled each Kafka hop of a saga (timer -> events -> saga agent, and the
former outbox hop to Pulsar) by 1-1.5 s, and pushed the timeout-to-compensation p99 past
2 s. A short long-poll bounds that wait; the cost is an idle fetch every
``fetch_max_wait_ms`` per worker.

Every record Faust produces (each table write's changelog record included) asks
``App.maybe_start_producer()`` for the producer. That method is wrapped in mode's
``@stampede``, which awaits ``asyncio.sleep(0)`` three times per call, so the one task that
drains the changelog buffer sent at most one record per three loop turns. Once the producer
runs, ``SagaApp`` answers at once. The changelog buffer's limit (``ProducerBuffer.max_messages``,
a class attribute of 100) is raised: past it Faust stalls the consumer on every message
until the buffer ebbs (faust-streaming issue 173).
"""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ProducerT
from mode import Service

__all__ = ["CHANGELOG_BUFFER_MAX", "SagaApp", "Transport"]

#: Changelog records waiting to be produced before Faust holds the consumer back.
CHANGELOG_BUFFER_MAX = 10_000


class SagaApp(faust.App):
    """A faust.App whose worker consumer long-polls Kafka for at most ``fetch_max_wait_ms``."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> ProducerT:
        producer = self.producer
        # Faust's producers are mode Services (ProducerT does not declare `_started`).
        if not self.in_transaction and cast(Service, producer)._started.is_set():
            return producer  # the common case, without @stampede's three loop turns
        started: ProducerT = await super().maybe_start_producer()  # @stampede is untyped
        return started

    def _new_producer(self) -> ProducerT:
        producer = super()._new_producer()
        producer.buffer.max_messages = CHANGELOG_BUFFER_MAX
        return producer


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = cast(SagaApp, self.app).fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
