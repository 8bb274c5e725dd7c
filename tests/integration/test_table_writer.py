"""The table writer (tables/writer.py) on the real Kafka and a real RocksDB: a batch larger than
one Kafka record batch reaches the changelog whole and in order, the local store holds each
key's last value and the changelog offset of the batch's last record, and the batch's other
messages reach their topics; a batch Kafka refuses is WriteFailed and leaves the store as it
was."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import Options, Rdict

from tables.writer import TableWriter, WriteFailed
from tests.support.stack import KAFKA

pytestmark = pytest.mark.stack

OFFSET_KEY = b"__faust\0offset__"


class Store:
    """What the writer uses of Faust's RocksDB store: a real RocksDB per partition."""

    offset_key = OFFSET_KEY

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(str(self.folder / f"p{partition}"), Options(raw_mode=True))
        return self.dbs[partition]


async def _read_all(topic: str, partition: int) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[tuple[int, bytes | None, bytes | None]] = []
        while len(out) < end:
            for records in (await consumer.getmany(tp, timeout_ms=2000)).values():
                out.extend((r.offset, r.key, r.value) for r in records)
        return out
    finally:
        await consumer.stop()


async def test_a_batch_is_written_whole_to_kafka_then_to_the_store(tmp_path: Path) -> None:
    prefix = f"writer-{uuid.uuid4().hex[:8]}"
    changelog, other = f"{prefix}-sagas-changelog", f"{prefix}-other"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(changelog, 2, 1), NewTopic(other, 2, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", max_batch_size=16 * 1024)
    await producer.start()
    store = Store(tmp_path)
    table = SimpleNamespace(name="sagas", data=store,
                            changelog_topic=SimpleNamespace(get_topic_name=lambda: changelog))

    async def started() -> AIOKafkaProducer:
        return producer

    writer = TableWriter(started, [table])  # type: ignore[list-item]
    try:
        batch = writer.batch()
        value = b"x" * 1000  # 2,000 of them: far more than one 16 KiB record batch
        for i in range(2000):
            batch.put("sagas", 1, f"saga-{i % 500}".encode(), value + str(i).encode())
        batch.put("sagas", 1, b"saga-0", None)  # the last write of a key wins: deleted
        batch.send(other, b"k", b"a message", partition=1, headers={"reason": b"why"})
        batch.send(other, b"keyed", b"by its key")
        effects: list[str] = []
        batch.then(lambda: effects.append(f"local store has {len(list(store.dbs[1].keys()))} keys"))
        await writer.commit(batch)

        records = await _read_all(changelog, 1)
        assert [(k, v) for _, k, v in records] == list(batch.log[("sagas", 1)])  # whole, in order
        db = store.dbs[1]
        assert db.get(b"saga-0") is None and db.get(b"saga-1") == value + b"1501"
        assert int(db.get(OFFSET_KEY)) == records[-1][0]  # the batch's last changelog record
        assert effects == ["local store has 500 keys"]  # 499 sagas and the offset, then effects ran
        sent = [(k, v) for p in (0, 1) for _, k, v in await _read_all(other, p)]
        assert sorted(sent) == [(b"k", b"a message"), (b"keyed", b"by its key")]
        assert (b"k", b"a message") in [(k, v) for _, k, v in await _read_all(other, 1)]

        # A batch Kafka refuses (a partition the topic does not have) fails whole, and the
        # local store stays as it was.
        before = db.get(OFFSET_KEY)
        refused = writer.batch()
        refused.put("sagas", 1, b"saga-1", b"never stored")
        refused.send(other, b"k", b"v", partition=7)
        with pytest.raises(WriteFailed, match="Kafka refused a batch"):
            await writer.commit(refused)
        assert db.get(b"saga-1") == value + b"1501" and db.get(OFFSET_KEY) == before
    finally:
        await producer.stop()
        for db in store.dbs.values():
            db.close()
        await admin.delete_topics([changelog, other])
        await admin.close()
