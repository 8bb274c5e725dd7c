"""Out to Pulsar: commands and lifecycle notices, and dead letters.

The outbox bridge (bridges/outbox.py) hands each outbox record's commands to `OUTBOUND` and
goes on with the next record; a sender task sends what was handed over in rounds (see
`Outbound`), and a record counts as done (the bridge commits a batch once all its records
are) only once every one of its commands is in Pulsar or dead-lettered (acknowledged by
Kafka). Each way a round can fail ends in one of these: the records done, or the worker
stopped.

- A send that fails for a passing reason (a timeout, a lost connection, a broker not ready)
  is retried under the `pulsar-send` policy (common/retry.py) until it succeeds; at most
  BRIDGE_MAX_IN_FLIGHT records wait for Pulsar, after which the outbox bridge waits too.
- A send that fails for good (the topic deleted or terminated, the client not authorized:
  `pulsar_client.PERMANENT`) would hold its record forever: the command is dead-lettered
  instead, with the reason, counted in /metrics, and its topic reported failing in /ready
  until a send to it succeeds again.
- Anything else that fails in a round (dead-lettering to Kafka, acknowledging, a bug) is
  counted (`outbound_round_failures_total`) and the step that failed is tried again under
  the `outbound-round` policy. Past the policy's budget the worker reports not ready (/ready:
  `failing_topics` names `outbound-round` and the error); past the budget once more it
  crashes (`RoundFailed`, `app.crash`), giving its partitions up: their next reader sends
  the records not committed again, under the same command ids.

A saga's commands reach Pulsar in the order the saga handed them over, however long Pulsar
fails: an undo must not overtake the step it undoes (a CancelAlliance sent while its
CreateAlliance is still being retried, after a step timeout). A message goes into a send
only when every earlier message of its saga (its key) is in Pulsar, dead-lettered, or in
the same batch to another topic; a later round holds the others back while it sends other
sagas' messages at once. As no batch carries two messages of a saga to one topic, the order
on each topic holds even when Pulsar fails an earlier message of a batch and takes a later
one; across topics (a notice and a command of one event) the messages start in order.

Dead letters go through a Kafka topic first (any agent or bridge may write one) and are
forwarded in batches, acknowledged the same way; forwarding them is retried whatever the
error (they are safe in Kafka meanwhile), and a dead-letter topic failing for good is
reported in /ready too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import faust
from faust.types import StreamT

from agents.dead_letters import dead_letter
from bridges.alpes import ALPES
from bridges.pulsar_client import is_permanent, result_name
from bridges.pulsar_inbound import LINK
from common.retry import Policy, Waits, policy
from domain.messages import Command, Destination
from runtime.app import app, cfg
from runtime.metrics import METRICS
from streams.partner_saga import dead_letters
from wire.cloudevents import encode_command
from wire.outgoing import Outgoing

__all__ = ["FAILING_TOPICS", "OUTBOUND", "OUTBOUND_TOPICS", "ROUND_FAILING", "Outbound", "RoundFailed",
           "forward_dead_letters", "send_outbound"]

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


#: Topic -> why its last send failed for good; it leaves when a send to it succeeds. While a
#: round fails past its budget, ROUND_FAILING -> the error is here too (/ready reads this).
FAILING_TOPICS: dict[str, str] = {}
ROUND_FAILING = "outbound-round"

#: A round's failures are retried under common/retry.py's `outbound-round` policy
#: (RETRY_OUTBOUND_ROUND). Past its budget the worker is not ready; past it twice, it crashes.
ROUND_POLICY = policy(ROUND_FAILING)


class RoundFailed(RuntimeError):
    """A round could not finish within twice its budget: the worker stops (see the module
    docstring)."""


class Link(Protocol):
    """What the bridge needs of Pulsar (`bridges.pulsar_client.PulsarLink`)."""

    async def send_batch(self, items: Sequence[Outgoing]) -> list[Exception | None]: ...

    def drop_producer_if_closed(self, topic: str, error: BaseException) -> None: ...


#: agents.dead_letters.dead_letter: queues a dead letter, returns Kafka's acknowledgement.
DeadLetter = Callable[..., Awaitable[Awaitable[object]]]


def _sort_out(link: Link, items: Sequence[Outgoing], errors: Sequence[BaseException | None], *,
              give_up: bool) -> tuple[list[int], list[tuple[int, BaseException]]]:
    """After one send of `items`: the indexes to send again, and (when `give_up`) those Pulsar
    refuses for good, each with its error. Keeps FAILING_TOPICS and the failure count."""
    retry: list[int] = []
    refused: list[tuple[int, BaseException]] = []
    for i, ((topic, *_), err) in enumerate(zip(items, errors, strict=True)):
        if err is None:
            if FAILING_TOPICS:
                FAILING_TOPICS.pop(topic, None)
            continue
        if is_permanent(err):
            FAILING_TOPICS[topic] = result_name(err)
            if give_up:
                refused.append((i, err))
                continue
        link.drop_producer_if_closed(topic, err)
        retry.append(i)
    if retry:
        log.error("Pulsar send failed for %d of %d messages (%r); retrying",
                  len(retry), len(items), errors[retry[0]])
        METRICS.inc("pulsar_send_failures_total", len(retry))
    return retry, refused


async def _send_all(link: Link, items: list[Outgoing]) -> None:
    """Send every item, retrying the failed ones whatever the error (`pulsar-send` policy)
    until Pulsar acknowledged all. Never raises (but for cancellation): Faust acks a take()
    batch even when its body fails."""
    waits: Waits | None = None
    pending = items
    while pending:
        try:
            errors: Sequence[BaseException | None] = await link.send_batch(pending)
        except Exception as exc:  # not sent: retried like a failed send
            errors = [exc] * len(pending)
        retry, _ = _sort_out(link, pending, errors, give_up=False)
        pending = [pending[i] for i in retry]
        if pending:
            waits = waits or policy("pulsar-send").waits()
            await waits.sleep()


@app.task
async def open_producers() -> None:
    """Create every outbound producer at start-up: creating one (a topic lookup, maybe the
    topic itself) can take seconds, which must not fall on the first compensation. Retried
    under the `pulsar-producer` policy until they open (/ready lists the missing ones)."""
    topics = sorted(OUTBOUND_TOPICS)
    waits = policy("pulsar-producer").waits()
    while missing := [t for t in topics if t not in LINK.ready_topics]:
        results = await asyncio.gather(*(LINK.producer(t) for t in missing), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            delay = waits.next_delay()
            log.warning("opening Pulsar producers: %r; retrying in %.1fs", failed[0], delay)
            await asyncio.sleep(delay)
    log.info("bridge: producers open for %s", ", ".join(topics))


class _Item:
    """One message of a round and where it stands."""

    __slots__ = ("command", "message", "refused", "saga", "settled", "topic")

    def __init__(self, message: Outgoing, command: Command) -> None:
        self.message = message
        self.command = command
        self.topic: str = message[0]
        self.saga: str | None = message[3]  # the key
        self.refused: BaseException | None = None  # Pulsar refuses it for good: to be dead-lettered
        self.settled = False  # in Pulsar, or dead-lettered


@dataclass(eq=False, slots=True)
class _Event:
    """One outbox record's messages (one saga event's commands) and its acknowledgement."""

    items: list[_Item]
    ack: Callable[[], Awaitable[object]]
    acked: bool = False


class Outbound:
    """Commands on their way to Pulsar, acknowledging each outbox record once all of its
    commands are in Pulsar or dead-lettered.

    The outbox bridge hands over each record's commands and goes on; the sender task takes
    everything handed over since its last round and starts a round with it (a task of its
    own, so that a round retrying a send does not hold the next ones). A round sends its
    messages as one batch (`send_batch`: one loop wake-up per batch, not per message); under
    load the batches grow by themselves, idle a round is one record. Only when a send fails,
    or a message waits for an earlier one of its saga, does a round send more batches. Each
    record is acknowledged as soon as its messages are settled.

    The link to Pulsar, the dead-letter writer, the crash and the policies are the worker's
    own unless given (tests give fakes)."""

    def __init__(self, max_in_flight: int, *, link: Link = LINK, dead_letter: DeadLetter = dead_letter,
                 crash: Callable[[BaseException], Awaitable[object]] = app.crash,
                 send_policy: Policy | None = None, round_policy: Policy | None = None) -> None:
        self._max = max_in_flight
        self._link = link
        self._dead_letter = dead_letter
        self._crash = crash
        self._send_policy = send_policy or policy("pulsar-send")
        self._round_policy = round_policy or ROUND_POLICY
        self._queue: list[tuple[list[Outgoing], Sequence[Command], Callable[[], Awaitable[object]]]] = []
        self._handed = asyncio.Event()  # the queue has something
        self._room = asyncio.Event()  # fewer than max_in_flight events wait for Pulsar
        self._room.set()
        self._waiting = 0  # events handed over and not acknowledged yet
        self._rounds: set[asyncio.Task[None]] = set()
        self._rounds_started = 0
        # Saga -> its messages not settled yet, in hand-over order (across rounds).
        self._unsettled: dict[str, list[_Item]] = {}
        self._settled = asyncio.Event()  # set, and replaced, whenever messages settle
        self._stuck: dict[int, str] = {}  # round -> its error, while it fails past its budget

    @staticmethod
    def encode(commands: Sequence[Command]) -> list[Outgoing]:
        """The Pulsar messages of `commands` (those not carried out by a participant's API)."""
        return [(TOPIC_FOR[c.destination], encode_command(c), {"sagaid": c.saga_id, "type": c.type},
                 c.saga_id) for c in commands if not ALPES.handles(c)]

    async def send(self, commands: Sequence[Command], items: list[Outgoing],
                   ack: Callable[[], Awaitable[object]]) -> None:
        """Hand over `commands`, as `items` (their messages, from `encode`); `ack` runs once
        each is in Pulsar or dead-lettered. Returns at once, or, with BRIDGE_MAX_IN_FLIGHT
        events already waiting, once there is room. A saga's messages reach Pulsar in the
        order they are handed over (see the module docstring)."""
        while self._waiting >= self._max:
            self._room.clear()
            await self._room.wait()
        if len(items) < len(commands):  # some are calls to a participant's API, not messages
            for c in commands:
                if ALPES.handles(c):
                    await ALPES.dispatch(c)  # waits while the Alpes bridge has a backlog
            commands = [c for c in commands if not ALPES.handles(c)]
        if len(items) != len(commands):
            raise ValueError(f"{len(items)} messages for {len(commands)} commands: not from encode()")
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
            events = [self._track(items, commands, ack) for items, commands, ack in batch]
            self._rounds_started += 1
            task = asyncio.create_task(self._round(self._rounds_started, events))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)

    def _track(self, items: list[Outgoing], commands: Sequence[Command],
               ack: Callable[[], Awaitable[object]]) -> _Event:
        """An event's messages, queued behind the unsettled ones of their sagas."""
        event = _Event([_Item(m, c) for m, c in zip(items, commands, strict=True)], ack)
        for item in event.items:
            if item.saga is not None:
                queue = self._unsettled.get(item.saga)
                if queue is None:
                    self._unsettled[item.saga] = [item]
                else:
                    queue.append(item)
        return event

    async def _round(self, number: int, events: list[_Event]) -> None:
        """Send, dead-letter what Pulsar refuses, acknowledge each event once its messages are
        settled; until every event is acknowledged or the worker is crashed."""
        items = [item for event in events for item in event.items]
        pending = items  # to send
        sends: Waits | None = None  # since the round's first failed send
        trouble: Waits | None = None  # since the round's first failure in a row
        try:
            while True:
                settled = self._settled
                ready: list[_Item] = []
                resend = False
                try:
                    ready = self._ready(pending)
                    if ready:
                        resend = await self._send_batch(ready)
                        pending = [i for i in pending if not i.settled and i.refused is None]
                    refused = [i for i in items if i.refused is not None and not i.settled]
                    if refused:
                        await self._dead_letter_refused(refused)
                    await self._acknowledge(events)
                except Exception as exc:
                    trouble = trouble or self._round_policy.waits()
                    if not await self._failed(number, exc, trouble):
                        return
                    continue
                if trouble is not None:
                    trouble = None
                    self._unstuck(number)
                if all(e.acked for e in events):
                    return
                if resend:
                    sends = sends or self._send_policy.waits()
                    await sends.sleep()
                elif not ready:  # held back behind earlier messages of their sagas
                    await settled.wait()
        finally:  # done, crashed or cancelled (the worker stops): the next owner replays the rest
            self._waiting -= sum(not e.acked for e in events)
            self._room.set()
            METRICS.set("outbound_events_waiting", self._waiting)

    def _ready(self, pending: list[_Item]) -> list[_Item]:
        """The messages of `pending` (in hand-over order) that may go in the next batch: those
        whose saga's earlier unsettled messages all go in it too, each to another topic."""
        ready: list[_Item] = []
        topics: dict[str, set[str]] = {}  # saga -> its topics in this batch
        held: set[str] = set()
        unsettled = self._unsettled
        for item in pending:
            saga = item.saga
            if saga is None:
                ready.append(item)
            elif saga not in held:
                taken = topics.get(saga)
                if taken is None:
                    if unsettled[saga][0] is item:
                        topics[saga] = {item.topic}
                        ready.append(item)
                    else:
                        held.add(saga)
                elif unsettled[saga][len(taken)] is item and item.topic not in taken:
                    taken.add(item.topic)
                    ready.append(item)
                else:
                    held.add(saga)
        return ready

    async def _send_batch(self, ready: list[_Item]) -> bool:
        """One send; settles what Pulsar took, marks what it refuses for good. Returns whether
        some are to be sent again."""
        messages = [i.message for i in ready]
        errors = await self._link.send_batch(messages)
        retry, refused = _sort_out(self._link, messages, errors, give_up=True)
        for n, refusal in refused:
            ready[n].refused = refusal
        for item, error in zip(ready, errors, strict=True):
            if error is None:
                METRICS.inc("commands_sent_total", type=item.command.type)
                self._settle(item)
        self._wake_held()
        return bool(retry)

    async def _dead_letter_refused(self, refused: list[_Item]) -> None:
        """Commands Pulsar refuses for good go to the dead-letter topic (through Kafka, whose
        acknowledgement is awaited before they count as settled). Raises the first failure,
        after settling those that went through."""
        async def one(item: _Item) -> None:
            topic, payload, _, key = item.message
            cmd, err = item.command, cast(BaseException, item.refused)
            reason = f"Pulsar refuses to take it on {topic}: {result_name(err)} ({err})"
            if not payload.startswith(b"{"):
                # A participant's binary format (the Alpes services' Avro): the letter is the
                # command as JSON, whose personal fields the letter can mask.
                payload = cmd.model_dump_json().encode()
            await (await self._dead_letter(payload, reason, origin=topic, key=key.encode() if key else None,
                                           message_id=cmd.command_id))
            log.error("command %s %s of saga %s dead-lettered: %s", cmd.type, cmd.command_id, cmd.saga_id,
                      reason)
            METRICS.inc("commands_dead_lettered_total", type=cmd.type, reason=result_name(err))
            self._settle(item)

        results = await asyncio.gather(*(one(i) for i in refused), return_exceptions=True)
        self._wake_held()
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _acknowledge(self, events: list[_Event]) -> None:
        for event in events:
            if not event.acked and all(i.settled for i in event.items):
                await event.ack()
                event.acked = True
                self._waiting -= 1
                self._room.set()

    def _settle(self, item: _Item) -> None:
        item.settled = True
        if item.saga is not None:
            queue = self._unsettled[item.saga]
            queue.remove(item)
            if not queue:
                del self._unsettled[item.saga]

    def _wake_held(self) -> None:
        """Messages settled: rounds holding messages back look again."""
        self._settled.set()
        self._settled = asyncio.Event()

    async def _failed(self, number: int, exc: Exception, trouble: Waits) -> bool:
        """A step of round `number` raised: count it, and wait to try again. Past the budget
        the worker is not ready; past it twice the worker is crashed and this returns False:
        the round must end, its events unacknowledged."""
        METRICS.inc("outbound_round_failures_total")
        what = f"{type(exc).__name__}: {exc}"[:300]
        budget = trouble.policy.budget_s
        if trouble.exhausted and number not in self._stuck:
            self._stuck[number] = f"failing for {trouble.elapsed:.0f}s: {what}"
            FAILING_TOPICS[ROUND_FAILING] = self._stuck[number]
            log.error("outbound round failing past its %.0fs budget, worker not ready: %s", budget, what,
                      exc_info=exc)
        if trouble.elapsed >= 2 * budget:
            crash = RoundFailed(f"an outbound round has failed for {trouble.elapsed:.0f}s, "
                                f"its events unacknowledged: {what}")
            crash.__cause__ = exc
            log.critical("%s; stopping the worker: its partitions' next owner replays them", crash)
            await self._crash(crash)
            return False
        if number not in self._stuck:
            log.warning("outbound round failed (%s); retrying", what,
                        exc_info=exc if trouble.attempt == 0 else None)
        await trouble.sleep()
        return True

    def _unstuck(self, number: int) -> None:
        if self._stuck.pop(number, None) is None:
            return
        if self._stuck:
            FAILING_TOPICS[ROUND_FAILING] = next(iter(self._stuck.values()))
        else:
            FAILING_TOPICS.pop(ROUND_FAILING, None)


OUTBOUND = Outbound(cfg.bridge_max_in_flight)


@app.task
async def send_outbound() -> None:
    """The sender runs where the outbox bridge does: here with OUTBOX_BRIDGE=inline, else in
    the bridge's process (bridges/__main__.py)."""
    if cfg.outbox_bridge == "inline":
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
        await _send_all(LINK, items)
