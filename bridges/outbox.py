"""The outbox bridge: sends the sagas' commands from the Kafka outbox on to the participants.

The saga agent writes each event's commands to `<app>-outbox` (wire.internal.OutboxEntry) in
the same produce as the saga's new state, and never waits for Pulsar. This bridge reads the
outbox partitions of the sagas its worker actively owns (the worker tells it, after each
rebalance: `follow`), so a saga's commands fail over with the saga, in the same rebalance. (A
consumer group of its own moved the outbox partitions on its own schedule: a worker killed
left live sagas of other workers with their commands unsent until that group noticed, and
their steps timed out meanwhile; `make chaos` saw 24 of 1,198 sagas compensated.) It reads a
batch at a time (aiokafka `getmany`, no per-record stream machinery), hands each record's
commands to the outbound sender (bridges/pulsar_outbound.py: Pulsar topics, or a participant's
HTTP API), and commits the batch's offsets (under the group name `<app>-outbox`) only once
every command of it is in Pulsar, carried out, or dead-lettered. At least once: a bridge that
dies, or loses a partition, before its commit leaves the records to the partition's next
reader, which sends the same commands (same ids) again; participants deduplicate by command
id.

Order: a saga's records are in one outbox partition, in the order the saga decided them; a
batch is sent before the next one is fetched, and within a batch the sender keeps each
saga's order (an undo never overtakes its step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError

from agents.dead_letters import dead_letter
from bridges.pulsar_outbound import OUTBOUND, Outbound
from common.retry import policy
from runtime.app import app, cfg
from runtime.metrics import METRICS
from runtime.settings import Settings
from streams.partner_saga import outbox
from wire.stored import OUTBOX

__all__ = ["BATCH", "OutboxBridge", "forward_outbox"]

log = logging.getLogger(__name__)

#: Records per batch at most.
BATCH = 1000


class OutboxBridge:
    """Forwards the outbox partitions it is told to follow (`follow`): the partitions whose
    sagas its worker actively owns, so that a saga's commands fail over with the saga."""

    def __init__(self, cfg: Settings, outbound: Outbound, *,
                 dead_letter: Callable[..., Awaitable[Awaitable[object]]] = dead_letter,
                 consumer: Callable[[], Any] | None = None) -> None:
        self.cfg = cfg
        self.outbound = outbound
        self._dead_letter = dead_letter
        self._consumer = consumer or self._new_consumer
        self.topic = outbox.get_topic_name()
        self._wanted: frozenset[int] = frozenset()
        self._told = asyncio.Event()

    def follow(self, partitions: Iterable[int]) -> None:
        """From the next batch on, forward these outbox partitions (and no others)."""
        self._wanted = frozenset(partitions)
        self._told.set()

    def _new_consumer(self) -> AIOKafkaConsumer:
        c = self.cfg
        # Partitions assigned by hand (follow), offsets committed under the group's name: no
        # group membership, so no rebalance of its own; the partitions move with their sagas'.
        return AIOKafkaConsumer(
            bootstrap_servers=c.kafka_bootstrap, group_id=f"{c.app_id}-outbox",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH,
            fetch_max_wait_ms=c.fetch_max_wait_ms, **c.kafka_client_options())

    async def run(self) -> None:
        """Forward until cancelled; a consumer that fails is made again (`bridge-restart`
        policy's waits)."""
        waits = policy("bridge-restart").waits()
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                waits = policy("bridge-restart").waits()
                following: frozenset[int] = frozenset()
                while True:
                    if self._wanted != following:
                        following = self._wanted
                        await self._assign(consumer, following)
                    if not following:
                        self._told.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._told.wait(), 1.0)
                        continue
                    records = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                    if records:
                        await self.forward(records)
                        await self._commit(consumer, records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                METRICS.inc("bridge_restarts_total", bridge="outbox")
                delay = waits.next_delay()
                log.error("outbox bridge failed (%r); starting again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                await consumer.stop()

    async def _assign(self, consumer: Any, partitions: frozenset[int]) -> None:
        """Follow `partitions`, each from its committed offset (the beginning when none)."""
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        log.info("outbox bridge: forwarding partitions %s", sorted(partitions) or "none")

    async def forward(self, records: dict[Any, list[Any]]) -> None:
        """Hand every record's commands over, in partition order; return once each is sent
        or dead-lettered."""
        left = sum(map(len, records.values()))
        all_done = asyncio.get_running_loop().create_future()

        async def done() -> None:
            nonlocal left
            left -= 1
            METRICS.inc("outbox_records_forwarded_total")
            if left == 0 and not all_done.done():
                all_done.set_result(None)

        for tp, batch in records.items():
            for record in batch:
                try:
                    commands = OUTBOX.load(record.value).commands
                    items = self.outbound.encode(commands)
                except (ValidationError, ValueError, KeyError) as exc:
                    # Not a record any version of the saga agent wrote: kept, with why.
                    await (await self._dead_letter(record.value, f"invalid outbox record: {exc!r}"[:1000],
                                                   origin=f"{tp.topic}[{tp.partition}]", key=record.key))
                    await done()
                    continue
                await self.outbound.send(commands, items, done)
        if left:
            await all_done

    async def _commit(self, consumer: Any, records: dict[Any, list[Any]]) -> None:
        offsets = {tp: batch[-1].offset + 1 for tp, batch in records.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The partitions moved on meanwhile: their new reader sends these again (same ids).
            log.info("outbox bridge: offsets not committed (%r); the partitions' next reader sends "
                     "their records again", exc)


OUTBOX_BRIDGE = OutboxBridge(cfg, OUTBOUND)


@app.task
async def forward_outbox() -> None:
    """On the worker's event loop with OUTBOX_BRIDGE=inline (told its partitions by
    orchestrator/services.py); else the worker runs the bridge as its child process
    (`python -m bridges outbox`), and tells it its partitions on its stdin."""
    if cfg.outbox_bridge == "inline":
        await OUTBOX_BRIDGE.run()
