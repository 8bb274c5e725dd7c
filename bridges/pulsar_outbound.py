"""Out to Pulsar: commands and lifecycle notices, and dead letters.

The saga agent hands each event's commands to `OUTBOUND` and goes on with the next event;
one sender task sends what was handed over in batches (see `Outbound`), and the event is
acknowledged to Faust (so that its offset may be committed) only once Pulsar acknowledged
all of them. A send that fails for a passing reason (a timeout, a lost connection, a broker
not ready) is retried, with backoff, until it succeeds; at most BRIDGE_MAX_IN_FLIGHT events
wait for Pulsar, after which the saga agent waits too. A send that fails for good (the topic
deleted or terminated, the client not authorized: `pulsar_client.PERMANENT`) would hold its
event, and with it every later acknowledgement of the partition, forever: the command is
dead-lettered instead, with the reason, counted in /metrics, and its topic reported failing
in /ready until a send to it succeeds again.
Dead letters go through a Kafka topic first (any agent or bridge may write one) and are
forwarded in batches, acknowledged the same way; forwarding them is retried whatever the
error (they are safe in Kafka meanwhile), and a dead-letter topic failing for good is
reported in /ready too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import faust
from faust.types import StreamT

from agents.dead_letters import dead_letter
from bridges.alpes import ALPES
from bridges.pulsar_client import Outgoing, is_permanent, result_name
from bridges.pulsar_inbound import LINK
from domain.messages import Command, Destination
from orchestrator.app import app, cfg
from orchestrator.metrics import METRICS
from streams.partner_saga import dead_letters
from wire.cloudevents import encode_command

__all__ = ["FAILING_TOPICS", "OUTBOUND", "OUTBOUND_TOPICS", "Outbound", "forward_dead_letters",
           "send_outbound"]

log = logging.getLogger(__name__)

TOPIC_FOR = {
    Destination.INTEGRACIONES: cfg.pulsar_topic(cfg.integraciones_commands_topic),
    Destination.ALIANZAS: cfg.pulsar_topic(cfg.alianzas_commands_topic),
    Destination.LIFECYCLE: cfg.pulsar_topic(cfg.lifecycle_topic),
}
#: Every topic the worker produces to; their producers are opened at start-up (and /ready
#: waits for them). With PARTICIPANTS=alpes, integraciones' commands are its own calls
#: (bridges/alpes.py): over HTTP, or its Avro command topic.
_AVRO_COMMANDS = cfg.pulsar_topic(cfg.alpes_comando_crear_partner_topic)
OUTBOUND_TOPICS = frozenset(
    {TOPIC_FOR[Destination.LIFECYCLE], cfg.pulsar_topic(cfg.dead_letter_topic),
     *((_AVRO_COMMANDS,) if cfg.integraciones_transport == "pulsar" else ())}
    if cfg.participants == "alpes" else {*TOPIC_FOR.values(), cfg.pulsar_topic(cfg.dead_letter_topic)})
BATCH = 500
WITHIN_S = 0.005


#: Topic -> why its last send failed for good; it leaves when a send to it succeeds.
FAILING_TOPICS: dict[str, str] = {}


async def _send_all(items: list[Outgoing], *, give_up: bool) -> list[tuple[int, str]]:
    """Send (topic, payload, properties, key) items; retry the failed ones until all are
    acked, but for those failing for good when `give_up`: return their indexes in `items`,
    each with the reason. Never raises (but for cancellation): Faust acks a take() batch
    even when its body fails."""
    delay = 0.2
    given_up: list[tuple[int, str]] = []
    pending = list(range(len(items)))
    while pending:
        errors = await LINK.send_batch([items[i] for i in pending])
        failed = []
        for i, err in zip(pending, errors, strict=True):
            topic = items[i][0]
            if err is None:
                if FAILING_TOPICS:
                    FAILING_TOPICS.pop(topic, None)
                continue
            if is_permanent(err):
                reason = f"Pulsar refuses to take it on {topic}: {result_name(err)} ({err})"
                FAILING_TOPICS[topic] = result_name(err)
                if give_up:
                    given_up.append((i, reason))
                    continue
            LINK.drop_producer_if_closed(topic, err)
            failed.append(i)
        if failed:
            first = next(err for err in errors if err is not None)
            log.error("Pulsar send failed for %d of %d messages (%r); retrying in %.1fs",
                      len(failed), len(pending), first, delay)
            METRICS.inc("pulsar_send_failures_total", len(failed))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        pending = failed
    return given_up


async def _dead_letter_refused(items: list[Outgoing], commands: list[Command],
                               refused: list[tuple[int, str]]) -> None:
    """Commands Pulsar refuses for good go to the dead-letter topic (through Kafka, whose
    acknowledgement is awaited: the events they came from are acknowledged next)."""
    acks = []
    for i, reason in refused:
        topic, payload, _, key = items[i]
        cmd = commands[i]
        log.error("command %s %s of saga %s dead-lettered: %s", cmd.type, cmd.command_id, cmd.saga_id, reason)
        METRICS.inc("commands_dead_lettered_total", type=cmd.type, reason=FAILING_TOPICS.get(topic, "error"))
        acks.append(await dead_letter(payload, reason, origin=topic, key=key.encode() if key else None,
                                      message_id=cmd.command_id))
    await asyncio.gather(*acks)


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
    """Commands on their way to Pulsar, acknowledging each saga event once Pulsar acknowledged
    all of the event's commands.

    The agent hands over each event's commands and goes on; one sender task takes everything
    handed over since its last round and sends it as one batch (`PulsarLink.send_batch`: one
    loop wake-up per batch, not per message). Under load the batches grow by themselves; idle,
    a round is one event. Rounds overlap, each acknowledging its events in hand-over order
    (agents/acks.py keeps the partition order across rounds)."""

    def __init__(self, max_in_flight: int) -> None:
        self._max = max_in_flight
        self._queue: list[tuple[list[Outgoing], Sequence[Command], Callable[[], Awaitable[object]]]] = []
        self._handed = asyncio.Event()  # the queue has something
        self._room = asyncio.Event()  # fewer than max_in_flight events wait for Pulsar
        self._room.set()
        self._waiting = 0  # events handed over whose commands Pulsar has not acknowledged
        self._rounds: set[asyncio.Task[None]] = set()

    @staticmethod
    def encode(commands: Sequence[Command]) -> list[Outgoing]:
        """The Pulsar messages of `commands`. The saga agent encodes before it stores the
        saga's new state, so that nothing can fail between that write and the hand-over."""
        return [(TOPIC_FOR[c.destination], encode_command(c), {"sagaid": c.saga_id, "type": c.type},
                 c.saga_id) for c in commands if not ALPES.handles(c)]

    async def send(self, commands: Sequence[Command], items: list[Outgoing],
                   ack: Callable[[], Awaitable[object]]) -> None:
        """Hand over `commands`, as `items` (their messages, from `encode`); `ack` runs once
        Pulsar has them all. Returns at once, or, with BRIDGE_MAX_IN_FLIGHT events already
        waiting for Pulsar, once there is room. Commands leave in hand-over order, unless a
        send fails: its retry, after a backoff, may leave after later commands."""
        while self._waiting >= self._max:
            self._room.clear()
            await self._room.wait()
        if len(items) < len(commands):  # some are calls to a participant's API, not messages
            for c in commands:
                if ALPES.handles(c):
                    ALPES.dispatch(c)
            commands = [c for c in commands if not ALPES.handles(c)]
        self._queue.append((items, commands, ack))
        self._waiting += 1
        self._handed.set()

    async def run(self) -> None:
        """The sender: one round per wake-up, each round a task of its own."""
        while True:
            await self._handed.wait()
            self._handed.clear()
            batch, self._queue = self._queue, []
            METRICS.set("outbound_events_waiting", self._waiting)
            task = asyncio.create_task(self._round(batch))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    async def _round(self, batch: list[tuple[list[Outgoing], Sequence[Command],
                                             Callable[[], Awaitable[object]]]]) -> None:
        try:
            items = [item for items, _, _ in batch for item in items]
            refused = await _send_all(items, give_up=True)
            if refused:
                await _dead_letter_refused(items, [c for _, commands, _ in batch for c in commands], refused)
            skip = {i for i, _ in refused}
            n = 0
            for _, commands, ack in batch:
                for c in commands:
                    if n not in skip:
                        METRICS.inc("commands_sent_total", type=c.type)
                    n += 1
                await ack()
        finally:  # cancelled (the worker stops): its events are replayed by the next owner
            self._waiting -= len(batch)
            self._room.set()
            METRICS.set("outbound_events_waiting", self._waiting)


OUTBOUND = Outbound(cfg.bridge_max_in_flight)


@app.task
async def send_outbound() -> None:
    await OUTBOUND.run()


@app.agent(dead_letters, name="dead-letter-outbound")
async def forward_dead_letters(stream: StreamT[bytes]) -> None:
    topic = cfg.pulsar_topic(cfg.dead_letter_topic)
    # An agent's stream is a faust.Stream: StreamT does not declare take_events().
    async for events in cast("faust.Stream[bytes]", stream).take_events(BATCH, within=WITHIN_S):
        items: list[Outgoing] = []
        for ev in events:
            headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                       for k, v in (ev.headers or {}).items()}
            items.append((topic, ev.value, headers, None))
        await _send_all(items, give_up=False)


