"""The one writer of the tables: a batch of events' table changes and messages, made durable
together.

An agent works a batch of events at a time. It reads and writes the tables through a `Batch`
(reads see the batch's own writes), and queues there every message the batch leads to (the
saga's commands on the outbox, events for other sagas, dead letters). `TableWriter.commit`
then makes the whole batch durable in one go:

1. Kafka: each table partition's writes as one record batch to its changelog partition
   (aiokafka `send_batch`: one request entry, one future), every queued message beside them;
   all awaited (acks=all). The changelog is the source of truth.
2. The local stores: one RocksDB `WriteBatch` per table partition, holding the changes and
   the partition's persisted changelog offset (the last record of step 1), written once per
   batch, not once per record as Faust's `Table.__setitem__` does. Then the batch's local
   effects (`Batch.then`: the deadline index).
3. The caller acknowledges the batch's events.

A crash after 1 and before 2 leaves the local store behind its changelog: Faust's recovery
reads the changelog from the persisted offset and brings it up to date. A crash before 1
completes acknowledges nothing: the events are replayed, and the agents recognise what they
applied (their transitions are idempotent) and send the same messages again. Table writes
never go through Faust's `Table.__setitem__`, which writes to the current event's partition
and not the key's inside a batch (faust-streaming issues 300 and 497).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from rocksdict import WriteBatch

if TYPE_CHECKING:
    import faust
    from faust.stores.rocksdb import Store as RocksDBStore

__all__ = ["Batch", "Message", "Producer", "TableWriter", "WriteFailed"]

#: (topic, partition or None for the key's, key, value, headers)
Message = tuple[str, int | None, bytes | None, bytes, Mapping[str, bytes] | None]
#: What a table read returns: the stored value, or None.
Read = Callable[[str, int, bytes], bytes | None]


class WriteFailed(RuntimeError):
    """Kafka or the local store refused a batch: nothing of it may be acknowledged."""


class Batch:
    """A batch's writes, not yet durable. Reads see its own writes first. A `scope()` collects
    one event's writes apart, so that an event that fails half-way leaves nothing behind."""

    def __init__(self, read: Read, parent: Batch | None = None) -> None:
        self._read = read
        self._parent = parent
        #: (table, partition) -> key -> its last new value (None: deleted): the local store's
        self.changes: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        #: (table, partition) -> every write in order: the changelog's (a saga's every state
        #: reaches the snapshot mirror, which appends each state's transitions to its history)
        self.log: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.messages: list[Message] = []
        self.effects: list[Callable[[], object]] = []

    def get(self, table: str, partition: int, key: bytes) -> bytes | None:
        changes = self.changes.get((table, partition))
        if changes is not None and key in changes:
            return changes[key]
        if self._parent is not None:
            return self._parent.get(table, partition, key)
        return self._read(table, partition, key)

    def put(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        """Set (None: delete) `key` of `table`'s `partition`: the key's own partition."""
        self.changes.setdefault((table, partition), {})[key] = value
        self.log.setdefault((table, partition), []).append((key, value))

    def send(self, topic: str, key: bytes | None, value: bytes, *, partition: int | None = None,
             headers: Mapping[str, bytes] | None = None) -> None:
        """Queue a message; without `partition`, it goes to its key's partition. Messages to a
        topic keep their order among those sent by key, and among those given a partition
        (the agents send each topic's messages one way)."""
        self.messages.append((topic, partition, key, value, headers))

    def then(self, effect: Callable[[], object]) -> None:
        """Run `effect` once the batch is durable (a local index update)."""
        self.effects.append(effect)

    def scope(self) -> Batch:
        """A batch for one event's writes, reading through this one; `keep` it or drop it."""
        return Batch(self._read, parent=self)

    def keep(self, scope: Batch) -> None:
        """Make `scope`'s writes this batch's, in their order."""
        for where, changes in scope.changes.items():
            self.changes.setdefault(where, {}).update(changes)
        for where, log in scope.log.items():
            self.log.setdefault(where, []).extend(log)
        self.messages.extend(scope.messages)
        self.effects.extend(scope.effects)

    def __len__(self) -> int:
        return sum(map(len, self.log.values())) + len(self.messages)


class Producer(Protocol):
    """What the writer needs of Kafka: aiokafka's AIOKafkaProducer."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Awaitable[Any]: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> Awaitable[Any]: ...


@dataclass
class _Spool:
    """Records for one topic partition, cut into record batches as aiokafka allows."""

    builders: list[Any] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, producer: Producer, key: bytes | None, value: bytes | None,
            headers: list[tuple[str, bytes]]) -> None:
        if self.builders and self.builders[-1].append(timestamp=None, key=key, value=value,
                                                      headers=headers) is not None:
            self.counts[-1] += 1
            return
        builder = producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            raise WriteFailed(f"a record of {len(value or b'')} bytes does not fit in a Kafka batch")
        self.builders.append(builder)
        self.counts.append(1)


class TableWriter:
    """Commits batches (see the module docstring). `producer` returns the started aiokafka
    producer; `tables` are the Faust tables written (RocksDB store), by name."""

    def __init__(self, producer: Callable[[], Awaitable[Producer]],
                 tables: Iterable[faust.Table[Any, Any]]) -> None:
        self._producer = producer
        self._tables = {t.name: t for t in tables}

    def batch(self) -> Batch:
        return Batch(self.read)

    def _store(self, table: str) -> RocksDBStore:
        return cast("RocksDBStore", self._tables[table].data)

    def read(self, table: str, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._store(table)._db_for_partition(partition).get(key)
        return value

    def changelog(self, table: str) -> str:
        name: str = self._tables[table].changelog_topic.get_topic_name()
        return name

    async def commit(self, batch: Batch) -> None:
        """Make `batch` durable (Kafka, then the local stores), then run its effects. Raises
        WriteFailed when anything refuses; then nothing of the batch counts as done."""
        if not batch.changes and not batch.messages:
            for effect in batch.effects:
                effect()
            return
        try:
            last = await self._produce(batch)
        except WriteFailed:
            raise
        except Exception as exc:
            raise WriteFailed(f"Kafka refused a batch of {len(batch)} writes: {exc!r}") from exc
        try:
            for (table, partition), changes in batch.changes.items():
                store = self._store(table)
                writes = WriteBatch(raw_mode=True)
                for key, value in changes.items():
                    if value is None:
                        writes.delete(key)
                    else:
                        writes.put(key, value)
                writes.put(store.offset_key, str(last[(table, partition)]).encode())
                store._db_for_partition(partition).write(writes)
            for effect in batch.effects:
                effect()
        except Exception as exc:
            raise WriteFailed(f"the local store refused a batch of {len(batch)} writes: {exc!r}") from exc

    async def _produce(self, batch: Batch) -> dict[tuple[str, int], int]:
        """Send the batch's changelog records and messages; return the offset of each table
        partition's last changelog record, once Kafka acknowledged everything."""
        producer = await self._producer()
        spools: dict[tuple[str, int], _Spool] = {}
        tables: dict[tuple[str, int], tuple[str, int]] = {}  # changelog partition -> table partition
        for (table, partition), log in batch.log.items():
            where = (self.changelog(table), partition)
            tables[where] = (table, partition)
            spool = spools.setdefault(where, _Spool())
            for key, value in log:
                spool.add(producer, key, value, [])
        keyed: list[Awaitable[Any]] = []
        for topic, to, mkey, mvalue, headers in batch.messages:
            pairs = [(k, v) for k, v in (headers or {}).items()]
            if to is None:  # the key's partition: aiokafka's partitioner picks it
                keyed.append(await producer.send(topic, value=mvalue, key=mkey, headers=pairs))
            else:
                spools.setdefault((topic, to), _Spool()).add(producer, mkey, mvalue, pairs)
        sent: list[tuple[tuple[str, int], int, Awaitable[Any]]] = []
        for (topic, partition), spool in spools.items():
            for builder, count in zip(spool.builders, spool.counts, strict=True):
                builder.close()
                sent.append(((topic, partition), count, await producer.send_batch(builder, topic,
                                                                                  partition=partition)))
        results = await asyncio.gather(*(f for _, _, f in sent), *keyed)
        last: dict[tuple[str, int], int] = {}
        for (where, count, _), meta in zip(sent, results, strict=False):
            if where in tables:
                table_partition = tables[where]
                last[table_partition] = max(last.get(table_partition, -1), meta.offset + count - 1)
        return last
