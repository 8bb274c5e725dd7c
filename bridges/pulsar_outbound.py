"""Out to Pulsar: commands and lifecycle notices, and dead letters.

The saga agent hands each event's commands to `OUTBOUND` and goes on with the next event;
the commands are sent with the asyncio Pulsar producers (batching), and the event is
acknowledged to Faust (so that its offset may be committed) only once Pulsar acknowledged
all of them. A failed send is retried, with backoff, until it succeeds; at most
BRIDGE_MAX_IN_FLIGHT events wait for Pulsar, after which the saga agent waits too.
Dead letters go through a Kafka topic first (any agent or bridge may write one) and are
forwarded in batches, acknowledged the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bridges.pulsar_inbound import LINK
from domain.messages import Command, Destination
from orchestrator.app import app, cfg
from orchestrator.metrics import METRICS
from streams.partner_saga import dead_letters
from wire.cloudevents import encode_command

__all__ = ["OUTBOUND", "OUTBOUND_TOPICS", "Outbound", "forward_dead_letters"]

log = logging.getLogger(__name__)

TOPIC_FOR = {
    Destination.INTEGRACIONES: cfg.pulsar_topic(cfg.integraciones_commands_topic),
    Destination.ALIANZAS: cfg.pulsar_topic(cfg.alianzas_commands_topic),
    Destination.LIFECYCLE: cfg.pulsar_topic(cfg.lifecycle_topic),
}
#: Every topic the worker produces to; their producers are opened at start-up (and /ready
#: waits for them).
OUTBOUND_TOPICS = frozenset({*TOPIC_FOR.values(), cfg.pulsar_topic(cfg.dead_letter_topic)})
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
    topics = sorted(OUTBOUND_TOPICS)
    delay = 0.5
    while missing := [t for t in topics if t not in LINK.ready_topics]:
        results = await asyncio.gather(*(LINK.producer(t) for t in missing), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning("opening Pulsar producers: %r; retrying in %.1fs", failed[0], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    log.info("bridge: producers open for %s", ", ".join(topics))


class Outbound:
    """Commands on their way to Pulsar, one delivery per saga event, each acknowledging its
    event when Pulsar acknowledged all of the event's commands."""

    def __init__(self, max_in_flight: int) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()  # events whose commands Pulsar has not acknowledged

    async def send(self, commands: Sequence[Command], ack: Callable[[], Awaitable[object]]) -> None:
        """Start sending `commands`; `ack` runs once Pulsar has them all. Returns at once,
        or, with BRIDGE_MAX_IN_FLIGHT events already waiting for Pulsar, once one is done.
        Deliveries start in call order, so a saga's commands leave in the order decided,
        unless a send fails: its retry, after a backoff, may leave after later commands."""
        items = [(TOPIC_FOR[c.destination], encode_command(c), {"sagaid": c.saga_id, "type": c.type},
                  c.saga_id) for c in commands]
        await self._slots.acquire()
        task = asyncio.create_task(self._deliver(items, commands, ack))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        METRICS.set("outbound_events_waiting", len(self._tasks))

    def _finished(self, task: asyncio.Task[None]) -> None:  # also when cancelled
        self._tasks.discard(task)
        self._slots.release()
        METRICS.set("outbound_events_waiting", len(self._tasks))

    @staticmethod
    async def _deliver(items: list[tuple[str, bytes, dict[str, str], str | None]],
                       commands: Sequence[Command], ack: Callable[[], Awaitable[object]]) -> None:
        await _send_all(items)
        for c in commands:
            METRICS.inc("commands_sent_total", type=c.type)
        await ack()


OUTBOUND = Outbound(cfg.bridge_max_in_flight)


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


