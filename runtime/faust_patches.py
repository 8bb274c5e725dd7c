"""The patches this project makes to Faust: the most fragile code of the project.

They override private methods of faust-streaming, read in version 0.15.3 (pinned in
pyproject.toml). A new Faust may rename, move or change any of them; the test
`tests/unit/test_faust_patches.py::test_the_patched_faust_methods_are_the_ones_read` keeps a
digest of each method's source as read, and fails, naming the method, when one differs: read
the new one and this module again before you change the pin. What is overridden, and why:

- `faust.App.maybe_start_producer`, `App._new_producer` (`SagaApp`): the producer answered at
  once once started; the changelog buffer's limit raised (`ProducerBuffer.max_messages`).
- `faust.App._new_transport`, `AIOKafkaConsumerThread._create_worker_consumer`,
  `faust.transport.drivers.aiokafka.Consumer._new_consumer_thread` (`Transport`,
  `_ConsumerThread`, `_Consumer`): the worker consumer with a short fetch long-poll.
- `faust.transport.consumer.Consumer.getmany`, `.perform_seek`, `._new_offset`, `._add_gap`
  (`_Consumer`), `faust.Event.ack` (`ManualAckEvent`): no record is skipped for good at a
  rebalance.

The details:

Faust's aiokafka transport with a short fetch long-poll, and a cheaper producer path.

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

The places where Faust lets a record go unprocessed for good, closed here (each seen losing
sagas: three workers starting while requests came in, one killed, lost 43 of 200; a worker
taking over a killed one's partitions skipped one record in 5 runs):

- ``Consumer.getmany`` drops the records of a fetched batch it does not hand on: those of a
  partition paused since the fetch (a rebalance began), and the rest of the batch when the
  flow stops or the generation changes. aiokafka's position is past them all the same.
  ``_Consumer.getmany`` seeks each such partition back to its first record not handed on.
- ``Consumer.perform_seek``, which Faust relies on to read such records again after a
  rebalance, seeks only partitions with an offset above 0 committed (aiokafka's rule): a
  partition with nothing committed kept its position. ``_Consumer.perform_seek`` seeks it to
  its beginning; the saga agent recognises the events it applied (domain/transition.py).
- A stream acknowledges an event it skips (read while the flow was stopped for a rebalance,
  or from an older generation) though nothing processed it. ``ManualAckEvent.ack`` refuses that
  for the topics whose agent acknowledges for itself (``manual_ack``), and
  ``_Consumer._new_offset`` commits no further than the first offset not acknowledged
  (Faust's own check lets a commit pass a single missing offset), and reads the partition
  again from there: the event is processed late, not lost. (A record can also miss its agent
  when a rebalance stops the flow while Faust hands it over: the same repair applies.)
- After a rebalance a partition's position can end up past records no agent processed (the
  consumer's own thread fetches while `perform_seek` seeks and resets the read offsets, one
  partition after another). Faust's `_add_gap` then records the jump as offsets without a
  record, and its `_new_offset` commits over them: `make chaos` kill -9 lost up to 84 of
  1,196 sagas that way. On the manual_ack topics (neither compacted nor transactional) a
  jump is no gap (`_Consumer._add_gap`; only what retention deleted is), so the hole rule
  above reads the records again; a seek back of `getmany`'s own is no longer made across a
  rebalance (it raced `perform_seek`); and records skipped at the end of a partition, with
  no later record to reveal the hole, are found by `_Consumer.reread_stalled` (records past
  the committed offset, committed and read offsets still for REREAD_AFTER_S: read again),
  run every REREAD_CHECK_S by a timer of the app (runtime/app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar, cast

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message, ProducerT, StreamT
from mode import Service

__all__ = ["CHANGELOG_BUFFER_MAX", "REREAD_CHECK_S", "ManualAckEvent", "SagaApp", "Transport", "acknowledge",
           "committed_offset", "manual_ack", "reread_stalled"]

log = logging.getLogger(__name__)
#: Seconds before a partition is read again once more from the same unacknowledged offset.
REREAD_AFTER_S = 30.0
#: Seconds between two looks for partitions stalled short of their agent.
REREAD_CHECK_S = 5.0
_PENDING: set[asyncio.Future[None]] = set()  # seeks under way (kept from the GC)

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


class ManualAckEvent(faust.Event):
    """A Faust event that a stream cannot acknowledge behind its agent's back on the topics
    whose agent acknowledges for itself (see the module docstring)."""

    #: Topics whose events only `acknowledge` acknowledges.
    manual_topics: ClassVar[set[str]] = set()
    _released = False

    def ack(self) -> bool:
        if not self._released and self.message.topic in self.manual_topics:
            return False  # skipped by the stream, not processed: read again after the rebalance
        return super().ack()


def manual_ack(topic: str) -> None:
    """Only `acknowledge` acknowledges this topic's events from now on."""
    ManualAckEvent.manual_topics.add(topic)


def reread_stalled(app: faust.App) -> None:
    """Read again the partitions whose records stopped short of their agent (see
    `_Consumer.reread_stalled`); a worker's timer calls it every REREAD_CHECK_S."""
    consumer = app.consumer
    if isinstance(consumer, _Consumer):
        consumer.reread_stalled()


def committed_offset(app: faust.App, topic: str, partition: int) -> int | None:
    """The offset this worker last committed on `topic`'s `partition` (the next record its
    agent reads after a restart), or None: nothing committed, or not this worker's."""
    committed = getattr(app.consumer, "_committed_offset", None)  # Faust keeps it per partition
    return None if committed is None else cast("int | None", committed.get(TP(topic, partition)))


async def acknowledge(stream: StreamT[Any], event: Any) -> None:
    """Acknowledge an event its agent is done with (a manual_ack topic's included)."""
    event._released = True
    await stream.ack(event)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 (Faust's)
        """Faust's getmany, except that a record it does not hand on leaves its partition's
        position at that record rather than past it (see the module docstring)."""
        records, active = await self._wait_next_records(timeout)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        undelivered: dict[TP, int] = {}  # partition -> its first record not handed on
        try:
            if not self.flow_active:
                # Faust's own step: back to the committed offsets, at or before these records.
                await self.perform_seek()
                return
            for tp, record in self.scheduler.iterate(records):
                if tp in undelivered:
                    continue
                if (not self.flow_active or self.app.consumer_generation_id != generation
                        or not (active is None or tp in active or tp in self._buffered_partitions)):
                    undelivered[tp] = record.offset
                    continue
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, self._to_message(tp, record)
        finally:
            if self.flow_active and self.app.consumer_generation_id == generation:
                await self._seek_back(undelivered)
            # Else a rebalance began: its end seeks every partition to its committed offset
            # (perform_seek), at or before these records. A seek back here would race that
            # seek, and could leave a partition past records that were never processed.

    async def _seek_back(self, undelivered: dict[TP, int]) -> None:
        assigned = self.assignment()
        for tp, offset in undelivered.items():
            if tp in assigned:  # else its new owner reads it
                try:
                    # aiokafka seeks only its own TopicPartition type (Faust's TP is not one).
                    await self.seek(cast(TP, TopicPartition(tp.topic, tp.partition)), offset)
                except Exception as exc:  # revoked meanwhile: the same
                    log.debug("no seek back of %s to %d: %r", tp, offset, exc)

    #: Partition -> (offset, when) of the last re-read for a record never handed to its agent.
    _reread: dict[TP, tuple[int, float]]

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's, except that nothing is committed past an offset not acknowledged. Agents
        acknowledge in the order they read (a batch at a time; Faust's own streams do too), so
        such a hole is a record that never reached its agent: the partition is read again
        from it."""
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            gaps = self._gap[tp]  # offsets Faust knows hold no record (it adds them to acked)
            if not any(iv.begin <= committed < iv.end for iv in gaps):
                self._read_again(tp, committed, min(acked))
                return None
        new: int | None = super()._new_offset(tp)
        return new

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's, except on the topics whose agent acknowledges for itself: there a jump in
        the offsets read is records this consumer skipped, not offsets without a record (the
        topics are neither compacted nor transactional), and a gap would let the commit pass
        them. Only the part retention deleted (below the partition's first offset) is a gap;
        the rest stays a hole, which `_new_offset` reads again."""
        if tp.topic not in ManualAckEvent.manual_topics:
            await super()._add_gap(tp, offset_from, offset_to)
            return
        earliest = (await self.earliest_offsets(tp)).get(tp)
        log.warning("%s[%d]: offsets from %d to %d were skipped, not read; they will be read again",
                    tp.topic, tp.partition, offset_from, offset_to - 1)
        if earliest is not None and earliest > offset_from:
            await super()._add_gap(tp, offset_from, min(earliest, offset_to + 1) - 1)

    def _read_again(self, tp: TP, offset: int, next_acked: int) -> None:
        if not hasattr(self, "_reread"):
            self._reread = {}
        last = self._reread.get(tp)
        now = time.monotonic()
        if last is not None and last[0] == offset and now - last[1] < REREAD_AFTER_S:
            return  # read again already: its record may be on its way
        self._reread[tp] = (offset, now)
        log.warning("%s[%d]: offsets %d..%d never reached the agent; reading again from %d",
                    tp.topic, tp.partition, offset, next_acked - 1, offset)
        task = asyncio.ensure_future(self._seek_back({tp: offset}))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    def reread_stalled(self, now: float | None = None) -> None:
        """The hole `_new_offset` cannot see: records skipped at the end of what a partition
        holds, with no later record acknowledged. On the topics whose agent acknowledges for
        itself, a partition with records past its committed offset (its high-water mark)
        whose committed and read offsets both stayed put for REREAD_AFTER_S, the flow
        running, has nothing on its way to its agent: it is read again from its committed
        offset. (Were its records only slow to be processed, they are processed twice, which
        the agents recognise.) Called every few seconds (runtime/app.py)."""
        if not self.flow_active:
            return
        now = time.monotonic() if now is None else now
        watched = self.__dict__.setdefault("_watched", {})
        for partition in self.assignment():
            tp = ensure_TP(partition)
            if tp.topic not in ManualAckEvent.manual_topics:
                continue
            committed = self._committed_offset.get(tp)
            end = self.highwater(tp)
            if committed is None or end is None or end <= committed:
                watched.pop(tp, None)
                continue
            state = (committed, self._read_offset.get(tp))
            seen = watched.get(tp)
            if seen is None or seen[0] != state:
                watched[tp] = (state, now)
            elif now - seen[1] >= REREAD_AFTER_S:
                watched[tp] = (state, now)
                self._read_again(tp, committed, end)

    _told: frozenset[str] = frozenset()

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, and, for each stream partition with none
        (or 0) committed, to its beginning (see the module docstring)."""
        try:
            committed = await self.seek_to_committed()
        except IllegalStateError as exc:  # revoked while sought: the rebalance's end seeks again
            log.info("a rebalance took partitions while they were sought: %s", exc)
            return
        # Still assigned: a rebalance may have begun since (this runs while the flow is
        # stopped, every second); its end seeks what it assigns.
        assigned = {ensure_TP(tp) for tp in self.assignment()}
        uncommitted = [tp for tp, offset in committed.items()
                       if not offset and not self._is_changelog_tp(tp) and ensure_TP(tp) in assigned]
        starts: dict[Any, int] = {}
        if uncommitted:
            try:
                # The assignment's own partitions: aiokafka TopicPartitions, as it requires.
                await self._thread.seek_to_beginning(*uncommitted)
                starts = dict(await self.earliest_offsets(*uncommitted))
            except IllegalStateError as exc:
                # Revoked between the two calls (the consumer's thread runs the rebalance):
                # not ours to seek any more. Raising would crash the fetcher, and the worker.
                log.info("a rebalance took partitions while they were sought: %s", exc)
                uncommitted, starts = [], {}
            topics = frozenset(tp.topic for tp in uncommitted)
            if topics and topics != self._told:  # it runs every second while the flow is stopped
                self._told = topics
                log.info("nothing committed yet on some partitions of %s: reading them from the beginning",
                         ", ".join(sorted(topics)))
        # What Faust's own perform_seek records.
        self._read_offset.update({ensure_TP(tp): offset if offset is not None and offset >= 0 else None
                                  for tp, offset in committed.items()})
        self._committed_offset.update({ensure_TP(tp): offset or None for tp, offset in committed.items()
                                       if offset is not None})
        # Where reading starts counts as committed for `_new_offset`: no first commit passes a
        # record the agent never saw either.
        self._committed_offset.update({ensure_TP(tp): start for tp, start in starts.items()})


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
