"""One asyncio Pulsar client per process, one batching producer per topic, and a batch send
that wakes the event loop once per batch rather than once per message.

A producer registers the schema its topic is meant to carry (`PulsarLink(schemas=...)`): a
participant's Avro topic gets the participant's own Avro definition (wire.alpes.avro_schema),
every other topic none (BYTES). Pulsar refuses a consumer with an Avro schema on a topic that has
no schema while anything is attached to it: a schemaless producer opened first on
integraciones' `comando-crear-partner` locked its Avro consumer out for good. A producer with
a schema is accepted in either order (registering it when the topic has none), so the order
in which the orchestrator and the services start no longer matters. The payloads are encoded
by the caller (wire/), and go out as they are: the schema is only registered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import _pulsar
import pulsar
import pulsar.asyncio as apulsar

from wire.outgoing import Outgoing

__all__ = ["PERMANENT", "PulsarLink", "is_permanent", "result_name"]

log = logging.getLogger(__name__)


#: Send errors no retry cures: the topic is gone or closed for good, the client may not
#: write to it, or the message itself is refused. Everything else (timeouts, lost
#: connections, a broker not ready, a full queue) is retried.
PERMANENT = frozenset({
    _pulsar.Result.TopicNotFound, _pulsar.Result.TopicTerminated, _pulsar.Result.InvalidTopicName,
    _pulsar.Result.AuthorizationError, _pulsar.Result.AuthenticationError,
    _pulsar.Result.NotAllowedError, _pulsar.Result.OperationNotSupported,
    _pulsar.Result.MessageTooBig, _pulsar.Result.InvalidMessage, _pulsar.Result.IncompatibleSchema,
    _pulsar.Result.UnsupportedVersionError, _pulsar.Result.InvalidConfiguration,
    _pulsar.Result.InvalidUrl, _pulsar.Result.CryptoError,
})


def _result(exc: BaseException) -> _pulsar.Result | None:
    if isinstance(exc, apulsar.PulsarException):
        return exc.error()
    if isinstance(exc, pulsar.PulsarException):
        if exc.args and isinstance(exc.args[0], _pulsar.Result):
            return exc.args[0]
        return getattr(_pulsar.Result, type(exc).__name__, None)  # pulsar.exceptions.TopicNotFound...
    return None


def result_name(exc: BaseException) -> str:
    """The Pulsar result code's name (TopicTerminated...), or the exception's type."""
    result = _result(exc)
    return result.name if result is not None else type(exc).__name__


def is_permanent(exc: BaseException) -> bool:
    """True for an error that retrying the same message cannot cure: a PERMANENT result, or
    an error that is not Pulsar's (a message the client refuses to build, say)."""
    result = _result(exc)
    return result in PERMANENT if result is not None else not isinstance(exc, (OSError, TimeoutError))


class _BatchResults:
    """Collects the results of a batch of sends, reported one by one from the Pulsar client's
    own threads, and completes one asyncio future when the last one is in. pulsar.asyncio
    resolves a future per message through `call_soon_threadsafe`: a loop wake-up, a callback
    and a task step for every message, which was a tenth of the worker's CPU."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.results: list[Any] = [None] * count
        self._left = count
        self._lock = threading.Lock()  # callbacks come from several threads

    def report(self, index: int, result: _pulsar.Result) -> None:
        self.results[index] = result
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self.loop.call_soon_threadsafe(self._complete)

    def callback(self, index: int) -> Any:
        def done(result: _pulsar.Result, _msg_id: Any) -> None:  # a Pulsar client thread
            self.report(index, result)
        return done

    def _complete(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class PulsarLink:
    """`schemas`: topic (full name) -> the schema its producer registers; other topics' producers
    register none."""

    def __init__(self, service_url: str, schemas: Mapping[str, pulsar.schema.Schema] | None = None,
                 client_options: Mapping[str, Any] | None = None) -> None:
        self.service_url = service_url
        #: TLS trust, host name verification, authentication (Settings.pulsar_client_options)
        self.client_options = dict(client_options or {})
        self.schemas: dict[str, pulsar.schema.Schema] = dict(schemas or {})
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
                **self.client_options,
            )
        return self._client

    @property
    def ready_topics(self) -> set[str]:
        """Topics with a producer created."""
        return set(self._producers)

    async def producer(self, topic: str) -> apulsar.Producer:
        """The topic's producer, created on first use with the topic's schema (`schemas`)."""
        p = self._producers.get(topic)
        if p is not None:
            return p
        async with self._lock:
            if topic not in self._producers:
                schema = self.schemas.get(topic)
                self._producers[topic] = await self.client.create_producer(
                    topic,
                    schema=schema,
                    batching_enabled=True,
                    batching_max_messages=1000,
                    batching_max_publish_delay_ms=2,
                    max_pending_messages=10_000,
                    block_if_queue_full=True,
                    send_timeout_millis=30_000,
                )
                if schema is not None:
                    log.info("Pulsar producer for %s registers its %s schema", topic,
                             schema.schema_info().schema_type().name)
            return self._producers[topic]

    def drop_producer_if_closed(self, topic: str, error: BaseException) -> None:
        """After a send failed with the producer closed (the broker closed it: the topic was
        deleted or unloaded), forget it, so that the retry opens a new one."""
        if _result(error) in (_pulsar.Result.AlreadyClosed, _pulsar.Result.ProducerNotInitialized):
            self._producers.pop(topic, None)

    async def send_batch(self, items: Sequence[Outgoing]) -> list[Exception | None]:
        """Send every item; return, in item order, None for each one Pulsar acknowledged and
        the exception for each one it did not. Producers are created on first use."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        batch = _BatchResults(loop, len(items))
        errors: list[Exception | None] = [None] * len(items)
        for i, (topic, payload, props, key) in enumerate(items):
            try:
                producer = await self.producer(topic)
                builder = _pulsar.MessageBuilder()
                builder.content(payload)
                for k, v in props.items():
                    builder.property(k, v)
                if key is not None:
                    builder.partition_key(key)
                # The asyncio Producer's C++ producer: its send_async takes a plain callback.
                producer._producer.send_async(builder.build(), batch.callback(i))
            except Exception as exc:  # not handed to Pulsar (no producer, a bad property...)
                errors[i] = exc
                batch.report(i, _pulsar.Result.UnknownError)
        await batch.future
        for i, result in enumerate(batch.results):
            if errors[i] is None and result != _pulsar.Result.Ok:
                errors[i] = pulsar.PulsarException(result)
        return errors

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
