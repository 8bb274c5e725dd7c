"""The inbound bridge (bridges/pulsar_inbound.py): what a batch of Pulsar messages becomes in
Kafka, and when the messages are acknowledged. Pulsar and Kafka are stood in for: the routing
and the acknowledgement rule are what is tested (tests/e2e run the bridge on the real ones)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

import bridges.pulsar_inbound as inbound
from streams.partner_saga import partner_routing
from tables.writer import Batch, WriteFailed
from tests.support.flows import partner_created

TOPIC = inbound.INBOUND_TOPICS[0]


def _batch() -> Batch:
    return Batch(lambda table, partition, key: None)


def test_a_batch_of_messages_becomes_saga_events_and_dead_letters_in_one_batch() -> None:
    partner = str(uuid.uuid4())
    batch = _batch()
    inbound.route(batch, partner_created(partner), TOPIC, "1:0:-1", 100.0)
    inbound.route(batch, b"{not json", TOPIC, "1:1:-1", 100.0)
    (topic, partition, key, value, _), (dtopic, _, _, original, headers) = batch.messages
    # A partner's first event names no saga: the partner index (its partition) finds or opens it.
    assert topic == partner_routing.get_topic_name() and partition is None  # the key's partition
    assert key == partner.encode()
    routed = json.loads(value)
    assert routed["type"] == "PartnerCreated" and routed["partner_id"] == partner
    assert routed["received_at"] == 100.0 and routed["origin"] == TOPIC
    assert dtopic.endswith("-dead-letters") and original == b"{not json"
    assert headers is not None and headers["origin"] == TOPIC.encode()
    assert headers["message_id"] == b"1:1:-1" and headers["reason"]


class _Consumer:
    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.nacked: list[Any] = []

    def acknowledge_async(self, msg: Any, callback: Any) -> None:
        self.acked.append(msg)

    def negative_acknowledge(self, msg: Any) -> None:
        self.nacked.append(msg)


async def test_a_batch_is_acknowledged_once_kafka_has_all_of_it() -> None:
    consumer, slots = _Consumer(), asyncio.Semaphore(0)
    written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    settling = asyncio.ensure_future(inbound._settle(consumer, ["m1", "m2"], written, slots))
    await asyncio.sleep(0.01)
    assert consumer.acked == []  # Kafka has not answered yet
    written.set_result(None)
    await settling
    assert consumer.acked == ["m1", "m2"] and consumer.nacked == [] and not slots.locked()


async def test_a_batch_kafka_refused_is_redelivered_not_acknowledged() -> None:
    consumer, slots = _Consumer(), asyncio.Semaphore(0)

    async def refused() -> None:
        raise WriteFailed("Kafka refused a batch of 2 writes")

    await inbound._settle(consumer, ["m1", "m2"], refused(), slots)
    assert consumer.nacked == ["m1", "m2"] and consumer.acked == [] and not slots.locked()


@pytest.mark.parametrize("raw", [b"", b"[]", json.dumps({"type": "PartnerCreated"}).encode()])
def test_every_message_that_cannot_be_routed_is_a_dead_letter_with_its_reason(raw: bytes) -> None:
    batch = _batch()
    inbound.route(batch, raw, TOPIC, "7:0:-1", 1.0)
    ((topic, _, _, original, headers),) = batch.messages
    assert topic.endswith("-dead-letters") and original == raw
    assert headers is not None and headers["reason"]
