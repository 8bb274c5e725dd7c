"""Faust's aiokafka transport with a short fetch long-poll.

Faust creates its worker consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka keeps at
most one fetch request in flight per broker, and a request names only the partitions that
had no unconsumed records when it was built. A partition whose records were still being
processed then waits for that request to come back before it can be fetched again: up to
the full long-poll when the other partitions are quiet. Under a burst (500 deadlines firing
in one tick) this stalled each Kafka hop of a saga (timer -> events -> saga agent, and the
former outbox hop to Pulsar) by 1-1.5 s, and pushed the timeout-to-compensation p99 past
2 s. A short long-poll bounds that wait; the cost is an idle fetch every
``fetch_max_wait_ms`` per worker.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["SagaApp", "Transport"]


class SagaApp(faust.App):
    """A faust.App whose worker consumer long-polls Kafka for at most ``fetch_max_wait_ms``."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
