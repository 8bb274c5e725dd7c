"""Pulsar -> Kafka: participant events into the orchestrator's topics.

Rule that loses nothing: a Pulsar message is acknowledged only after Kafka acknowledged the
write it became (the routed event, or its dead letter); if that write fails the message is
negatively acknowledged and Pulsar redelivers it. Messages are received a batch at a time
(Pulsar's batch receive) and the batch's writes go out as one produce through the table
writer (tables/writer.py: one record batch per partition), not a Faust send per message.
Decoding and validation happen here, at the edge: an invalid message becomes a dead letter
(original bytes + reason), and a valid one is keyed by its saga (when it names one) or by its
partner (see agents/partner_routing).

Every topic is consumed without a schema, the Alpes services' Avro `PartnerCreado` included
(decoded here with the writer's schema, wire/alpes.py): Pulsar accepts a schemaless consumer
whatever the topic's schema, and it never stands in the way of the service's Avro producer,
whichever starts first. A consumer WITH the Avro schema would be refused on a topic that has
no schema yet while anything else is attached (gestion-de-alianzas' own consumer of
PartnerCreado is schemaless): start order would matter again. The producers' schemas are
chosen in `LINK` (integraciones' `comando-crear-partner` gets its Avro schema).
A pump that fails is started again after a wait of the `bridge-restart` retry policy
(common/retry.py), for as long as it takes by default (/ready reports the topic meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pulsar
from faust.types import TopicT

from agents.dead_letters import dead_letter_in
from bridges.pulsar_client import PulsarLink
from common.retry import policy
from runtime.app import app, cfg
from runtime.metrics import METRICS
from streams.partner_saga import partner_routing, saga_events
from tables.partner_saga import WRITER
from tables.writer import Batch
from wire.alpes import (
    COMANDO_CREAR_PARTNER_DEFINITION,
    avro_schema,
    decode_contrato_aprobado,
    decode_contrato_creado,
    decode_contrato_rechazado,
    decode_partner_creado,
)
from wire.cloudevents import Inbound, WireError, decode_inbound
from wire.internal import PartnerRouted, SagaEnvelope
from wire.routing import first_hop

__all__ = ["INBOUND_TOPICS", "LINK", "SUBSCRIBED", "SUBSCRIBE_ERRORS", "inbound_bridge", "pump", "route",
           "run_inbound"]

log = logging.getLogger(__name__)
#: The worker's Pulsar client and producers. A producer to integraciones' command topic
#: registers the service's Avro schema (the command is Avro-encoded by wire.alpes).
LINK = PulsarLink(cfg.broker_url, client_options=cfg.pulsar_client_options(), schemas={
    cfg.pulsar_topic(cfg.alpes_comando_crear_partner_topic): avro_schema(COMANDO_CREAR_PARTNER_DEFINITION),
})
#: Messages received and written to Kafka at once, at most; and how long a batch may wait to fill.
BATCH_MAX = 500
BATCH_WAIT_MS = 5
#: A pump that ran this long before failing had been healthy: its restart waits start over.
HEALTHY_S = 60.0
#: Pulsar topics whose consumer is subscribed right now (reported by GET /ready).
SUBSCRIBED: set[str] = set()
#: Why a topic's consumer is not subscribed, while it is not (the Pulsar error's name, e.g.
#: AuthorizationError for a token whose role lost its permission): GET /ready reports it.
SUBSCRIBE_ERRORS: dict[str, str] = {}


#: The Alpes services' topics and how each is read (PARTICIPANTS=alpes); every other topic
#: carries the CloudEvents contract.
_ALPES_DECODERS: dict[str, Callable[[bytes, str], Inbound]] = {
    cfg.pulsar_topic(cfg.alpes_partner_creado_topic): decode_partner_creado,
    cfg.pulsar_topic(cfg.alpes_contrato_creado_topic): decode_contrato_creado,
    cfg.pulsar_topic(cfg.alpes_contrato_aprobado_topic): decode_contrato_aprobado,
    cfg.pulsar_topic(cfg.alpes_contrato_rechazado_topic): decode_contrato_rechazado,
}
#: The topics the bridge consumes, by participant profile.
INBOUND_TOPICS: tuple[str, ...] = (
    tuple(_ALPES_DECODERS) if cfg.participants == "alpes"
    else (cfg.pulsar_topic(cfg.partner_events_topic), cfg.pulsar_topic(cfg.alliance_events_topic))
)


def decode(raw: bytes, origin: str, message_id: str) -> Inbound:
    decoder = _ALPES_DECODERS.get(origin) if cfg.participants == "alpes" else None
    return decoder(raw, message_id) if decoder is not None else decode_inbound(raw)


def route(batch: Batch, raw: bytes, origin: str, message_id: str, received_at: float) -> None:
    """Queue in `batch` what one received message becomes in Kafka: the routed event, or its
    dead letter (original bytes and why)."""
    try:
        key, topic, value = _routed(decode(raw, origin, message_id), origin, received_at)
    except WireError as exc:
        dead_letter_in(batch, raw, str(exc), origin=origin, message_id=message_id)
        return
    except Exception as exc:
        log.exception("cannot route message %s from %s", message_id, origin)
        dead_letter_in(batch, raw, f"cannot route: {exc!r}", origin=origin, message_id=message_id)
        return
    if topic is None:
        dead_letter_in(batch, raw, value.decode(), origin=origin, message_id=message_id)
        return
    batch.send(topic.get_topic_name(), key, value)


def _routed(inbound: Inbound, origin: str, received_at: float) -> tuple[bytes, TopicT | None, bytes]:
    """(key, Kafka topic, value) for a decoded event; topic None means a dead letter (value:
    the reason). Pure: encoding only, nothing sent."""
    hop = first_hop(inbound)
    if hop.to == "saga":
        assert hop.saga_id is not None
        return _to_saga(inbound, hop.saga_id, origin, received_at, by_partner=hop.by_partner)
    if hop.to == "partner":
        assert inbound.partner_id is not None
        msg = PartnerRouted(type=inbound.type, event_id=inbound.event_id, saga_id=inbound.saga_id,
                            correlation_id=inbound.correlation_id, partner_id=inbound.partner_id,
                            fields=inbound.fields, raw=inbound.text, origin=origin,
                            received_at=received_at)
        return inbound.partner_id.encode(), partner_routing, msg.model_dump_json().encode()
    return b"", None, hop.reason.encode()


def _to_saga(inbound: Inbound, saga_id: str, origin: str, received_at: float, *,
             by_partner: bool = False) -> tuple[bytes, TopicT, bytes]:
    env = SagaEnvelope(event=inbound.event(saga_id), raw=inbound.text, origin=origin,
                       received_at=received_at, by_partner=by_partner)
    return saga_id.encode(), saga_events, env.model_dump_json().encode()


def _acknowledged(result: Any) -> None:
    """Pulsar's answer to an acknowledgement, on its own thread: nothing to do (a lost one
    means a redelivery, which the saga recognises)."""


async def _settle(consumer: Any, messages: list[Any], written: Awaitable[None],
                  slots: asyncio.Semaphore) -> None:
    """Acknowledge a batch's messages once Kafka has everything they became, else ask
    Pulsar for them again."""
    try:
        await written
    except Exception as exc:
        log.error("Kafka write of %d messages failed, Pulsar will redeliver them: %r", len(messages), exc)
        for msg in messages:
            consumer.negative_acknowledge(msg)
    else:
        for msg in messages:
            consumer.acknowledge_async(msg, _acknowledged)
        METRICS.inc("inbound_total", len(messages))
    finally:
        slots.release()


async def pump(topic: str) -> None:
    """Pulsar -> Kafka for one topic, a batch at a time: up to BATCH_MAX messages received
    at once (Pulsar's batch receive, waiting at most BATCH_WAIT_MS for a batch to fill),
    written to Kafka by the table writer's produce (one record batch per partition), then
    acknowledged. Up to BRIDGE_MAX_IN_FLIGHT messages are written and not yet acknowledged."""
    try:
        consumer = await LINK.client.subscribe(
            topic, cfg.subscription,
            consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=1000,
            negative_ack_redelivery_delay_ms=1000,
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(BATCH_MAX, -1, BATCH_WAIT_MS),
        )
    except Exception as exc:
        SUBSCRIBE_ERRORS[topic] = type(exc).__name__
        raise
    log.info("bridge: consuming %s (subscription %s)", topic, cfg.subscription)
    SUBSCRIBED.add(topic)
    SUBSCRIBE_ERRORS.pop(topic, None)
    # pulsar.asyncio has no batch receive: the client's own consumer does, blocking a thread
    # for at most BATCH_WAIT_MS; its acknowledgements go out without waking the event loop.
    raw = consumer._consumer
    slots = asyncio.Semaphore(max(1, cfg.bridge_max_in_flight // BATCH_MAX))  # batches in flight
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            messages = await asyncio.to_thread(raw.batch_receive)
            if not messages:
                continue
            await slots.acquire()
            batch = WRITER.batch()
            received_at = time.time()
            for msg in messages:
                route(batch, msg.data(), topic, str(msg.message_id()), received_at)
            task = asyncio.ensure_future(_settle(raw, messages, WRITER.commit(batch), slots))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        SUBSCRIBED.discard(topic)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await consumer.close()


async def supervise(topic: str) -> None:
    """Keep a topic's pump running: a failure (Pulsar or Kafka unreachable for a while) is
    logged, its message was negatively acknowledged, and the pump starts again after a wait
    of the `bridge-restart` policy; waits grow while it keeps failing, and start over after
    a pump that ran HEALTHY_S seconds. The policy's budget is endless by default; a finite
    one (RETRY_BRIDGE_RESTART) re-raises the failure once spent, which ends the bridge process
    (the worker starts another) or, inline, crashes the worker (Faust stops on a failed task)
    for its supervisor to start again, rather than run on without the bridge."""
    waits = policy("bridge-restart").waits()
    while True:
        started = time.monotonic()
        try:
            await pump(topic)
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() - started > HEALTHY_S:
                waits.reset()  # it had been healthy: this is a new failure, not the same one
            delay = waits.next_delay()
            if waits.exhausted:
                log.exception("bridge for %s failed; giving up after %.0fs of failures "
                              "(RETRY_BRIDGE_RESTART)", topic, waits.elapsed)
                raise
            log.exception("bridge for %s failed; restarting in %.1fs", topic, delay)
            METRICS.inc("bridge_restarts_total")
            await asyncio.sleep(delay)


async def run_inbound() -> None:
    """Every inbound topic's pump, each kept running by `supervise`: in the bridge process
    (INBOUND_BRIDGE=process, the default: bridges/__main__.py), or on the worker's loop."""
    await asyncio.gather(*(supervise(topic) for topic in INBOUND_TOPICS))


@app.task
async def inbound_bridge() -> None:
    """On the worker's event loop with INBOUND_BRIDGE=inline; else the worker's bridge process
    runs the pumps (orchestrator/services.py starts it)."""
    if cfg.inbound_bridge == "inline":
        await run_inbound()
