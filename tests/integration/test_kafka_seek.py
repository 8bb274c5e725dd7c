"""Faust's seek back after dropping fetched records, on the real Kafka.

Faust drops records it fetched for a partition it is not consuming yet (during a table
recovery, or after a generation change) and seeks every partition back to its committed
offset to read them again. aiokafka does not seek a partition with nothing committed, so its
dropped records were skipped for good: sagas started before the group's first commit never
ran (runtime/faust_patches.py). These tests fetch records, as Faust does before it
drops them, then run the seek on a real consumer of a real group.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.transport.consumer import Consumer as FaustConsumer

from runtime.faust_patches import _Consumer
from tests.support.stack import KAFKA

pytestmark = pytest.mark.stack

RECORDS = 10


class _OnRealConsumer:
    """What perform_seek uses of a Faust consumer, backed by a real aiokafka consumer."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._thread = consumer  # seek_to_beginning(*partitions)
        self.seek_to_committed = consumer.seek_to_committed
        self.assignment = consumer.assignment
        self.earliest_offsets = lambda *tps: consumer.beginning_offsets(list(tps))
        self._read_offset: dict[Any, int | None] = {}
        self._committed_offset: dict[Any, int | None] = {}
        self._told: frozenset[str] = frozenset()

    def _is_changelog_tp(self, tp: TopicPartition) -> bool:
        return False


@pytest.fixture
async def fetched(stack: None) -> AsyncIterator[tuple[AIOKafkaConsumer, TopicPartition]]:
    """A group member that has fetched all of a fresh partition's records, nothing committed."""
    topic, group = f"seek-{uuid.uuid4().hex[:10]}", f"seek-{uuid.uuid4().hex[:10]}"
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        assert [r.offset for r in await _read(consumer, tp)] == list(range(RECORDS))
        yield consumer, tp
    finally:
        await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[Any]:
    records: list[Any] = []
    for _ in range(10):
        batch = await consumer.getmany(tp, timeout_ms=1000)
        records += batch.get(tp, [])
        if not batch and records:
            break
    return records



async def test_fausts_own_seek_leaves_a_partition_with_nothing_committed_past_its_dropped_records(
        fetched: tuple[AIOKafkaConsumer, TopicPartition]) -> None:
    consumer, tp = fetched
    await FaustConsumer.perform_seek(_OnRealConsumer(consumer))  # type: ignore[arg-type]
    assert await consumer.position(tp) == RECORDS  # the gap the worker's consumer closes


async def test_the_workers_seek_reads_a_partition_with_nothing_committed_from_its_beginning(
        fetched: tuple[AIOKafkaConsumer, TopicPartition]) -> None:
    consumer, tp = fetched
    seeker = _OnRealConsumer(consumer)
    await _Consumer.perform_seek(seeker)  # type: ignore[arg-type]
    assert [r.value for r in await _read(consumer, tp)] == [f"r{i}".encode() for i in range(RECORDS)]
    assert seeker._committed_offset[tp] == 0  # where reading starts: no commit passes it


async def test_the_workers_seek_still_goes_back_to_the_committed_offset(
        fetched: tuple[AIOKafkaConsumer, TopicPartition]) -> None:
    consumer, tp = fetched
    await consumer.commit({tp: 4})
    seeker = _OnRealConsumer(consumer)
    await _Consumer.perform_seek(seeker)  # type: ignore[arg-type]
    assert [r.offset for r in await _read(consumer, tp)] == list(range(4, RECORDS))
    assert seeker._committed_offset[tp] == 4
