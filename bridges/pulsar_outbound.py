"""Kafka -> Pulsar: commands, lifecycle notices and dead letters out to the participants.

A batch of outbox events is sent with the asyncio Pulsar producers (batched), and the
agent moves on, letting Faust commit the batch's offsets, only once Pulsar acknowledged
every message of it. A failed send is retried, with backoff, until it succeeds: the
stream waits rather than skip a command.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from bridges.pulsar_inbound import LINK
from domain.messages import Command, Destination
from orchestrator.app import app, cfg
from orchestrator.metrics import METRICS
from streams.partner_saga import dead_letters, outbox
from wire.cloudevents import encode_command

__all__ = ["forward_dead_letters", "forward_outbox"]

log = logging.getLogger(__name__)

TOPIC_FOR = {
    Destination.INTEGRACIONES: cfg.pulsar_topic(cfg.integraciones_commands_topic),
    Destination.ALIANZAS: cfg.pulsar_topic(cfg.alianzas_commands_topic),
    Destination.LIFECYCLE: cfg.pulsar_topic(cfg.lifecycle_topic),
}
BATCH = 500
WITHIN_S = 0.005


async def _send_one(topic: str, payload: bytes, props: dict[str, str], key: str | None) -> object:
    producer = await LINK.producer(topic)  # created on first use, inside the retry
    return await producer.send(payload, properties=props, partition_key=key)


async def _send_all(items: list[tuple[str, bytes, dict[str, str], str | None]]) -> None:
    """Send (topic, payload, properties, key) items; retry the failed ones until all are acked.
    Never raises (but for cancellation): Faust acks a take() batch even when its body fails."""
    delay = 0.2
    while items:
        results = await asyncio.gather(*(_send_one(*it) for it in items), return_exceptions=True)
        failed = [it for it, r in zip(items, results, strict=True) if isinstance(r, Exception)]
        if failed:
            first = next(r for r in results if isinstance(r, Exception))
            log.error("Pulsar send failed for %d of %d messages (%r); retrying in %.1fs",
                      len(failed), len(items), first, delay)
            METRICS.inc("pulsar_send_failures_total", len(failed))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        items = failed


@app.task
async def open_producers() -> None:
    """Create every outbound producer at start-up: creating one (a topic lookup, maybe the
    topic itself) can take seconds, which must not fall on the first compensation."""
    topics = [*TOPIC_FOR.values(), cfg.pulsar_topic(cfg.dead_letter_topic)]
    delay = 0.5
    while missing := [t for t in topics if t not in LINK.ready_topics]:
        results = await asyncio.gather(*(LINK.producer(t) for t in missing), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning("opening Pulsar producers: %r; retrying in %.1fs", failed[0], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    log.info("bridge: producers open for %s", ", ".join(topics))


@app.agent(outbox, name="pulsar-outbound")
async def forward_outbox(stream):  # type: ignore[no-untyped-def]
    dead_topic = cfg.pulsar_topic(cfg.dead_letter_topic)
    async for values in stream.take(BATCH, within=WITHIN_S):
        items = []
        for value in values:
            try:
                cmd = Command.model_validate_json(value)
            except ValidationError as exc:  # not ours: straight to the dead letters, with why
                reason = f"invalid outbox record: {exc.errors()[0]['msg']}"
                items.append((dead_topic, value, {"reason": reason, "origin": outbox.get_topic_name()},
                              None))
                continue
            items.append((TOPIC_FOR[cmd.destination], encode_command(cmd),
                          {"sagaid": cmd.saga_id, "type": cmd.type}, cmd.saga_id))
            METRICS.inc("commands_sent_total", type=cmd.type)
        await _send_all(items)


@app.agent(dead_letters, name="dead-letter-outbound")
async def forward_dead_letters(stream):  # type: ignore[no-untyped-def]
    topic = cfg.pulsar_topic(cfg.dead_letter_topic)
    async for events in stream.take_events(BATCH, within=WITHIN_S):
        items = []
        for ev in events:
            headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                       for k, v in (ev.headers or {}).items()}
            items.append((topic, ev.value, headers, None))
        await _send_all(items)


