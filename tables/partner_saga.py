"""Tables of the partner-creation saga (RocksDB store, changelog in Kafka).

Keys are raw UTF-8 strings, as on the topics that feed them (see streams/partner_saga.py),
so `app.table_route` sends a web request to the worker that owns the key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import faust
from faust.types import EventT

from runtime.app import app, cfg
from tables.deadline_index import DeadlineIndex
from tables.replay import newer_only
from tables.writer import Producer, TableWriter

if TYPE_CHECKING:
    from faust.stores.rocksdb import Store as RocksDBStore

__all__ = ["DEADLINES", "WRITER", "SagaTable", "partner_sagas", "sagas"]

log = logging.getLogger(__name__)


#: RocksDB memory per partition database. Faust's defaults (64 MiB write buffers, three of
#: them, and a 2 GiB block cache, per partition) let a worker holding a million sagas grow to
#: ~750 MiB; these keep it near the Python process's own size (make bench-retention).
ROCKSDB_OPTIONS = {"write_buffer_size": 4 * 1024**2, "max_write_buffer_number": 2,
                   "target_file_size_base": 16 * 1024**2, "block_cache_size": 4 * 1024**2}


class _TableOptions(TypedDict):
    key_type: type[bytes]
    value_type: type[bytes]
    partitions: int
    options: dict[str, int]


def _common() -> _TableOptions:
    # Faust picks a table's serializers from its key/value types: bytes means raw, the same
    # as the topics' raw_schema(). Anything else would silently mean json. A fresh options
    # dict each time: Faust's store pops keys from it.
    return {"key_type": bytes, "value_type": bytes, "partitions": cfg.topic_partitions,
            "options": dict(ROCKSDB_OPTIONS)}


class SagaTable(faust.Table[str, bytes]):
    """The `sagas` table, which also keeps the deadline index up to date when its changelog
    is replayed into this worker (recovery, standby replicas). Looked up by saga id (str;
    the raw key serializer encodes it), values are states as JSON bytes."""

    index: DeadlineIndex

    def apply_changelog_batch(self, batch: Iterable[EventT[bytes]]) -> None:
        events = list(batch)
        # A replayed state older than the stored one is not applied (tables/replay.py).
        kept, stale = newer_only([e.message for e in events], _stored_value)
        applied = [events[i] for i in kept]
        super().apply_changelog_batch(applied)
        if stale:
            log.warning("sagas changelog replay: %d record(s) older than the stored states not applied",
                        stale)
            # The persisted offsets still cover the whole batch: its stale records were read.
            store = cast("RocksDBStore", self.data)
            last: dict[Any, int] = {}
            for e in events:
                last[e.message.tp] = max(e.message.offset, last.get(e.message.tp, -1))
            for tp, offset in last.items():
                if offset > (store.persisted_offset(tp) or -1):
                    store.set_persisted_offset(tp, offset)
        self.index.on_changelog((e.message.partition, e.message.key, e.message.value) for e in applied)


def _stored_value(partition: int, key: bytes) -> bytes | None:
    value = _stored_states(partition).get(key)
    return None if value is None else bytes(value)


def _stored_states(partition: int) -> Any:
    """The sagas table's RocksDB of one partition (raw keys and values)."""
    return cast("RocksDBStore", sagas.data)._db_for_partition(partition)


#: saga id -> SagaState as JSON. Written by agents.partner_saga from saga-events.
sagas = cast(SagaTable, app.tables.add(SagaTable(app, name="sagas", help="saga id -> saga state (JSON)",
                                                 beacon=app.tables.beacon, **_common())))

#: Which sagas wait for a deadline, and when finished ones expire, in due order
#: (tables/deadline_index.py): derived from `sagas`, local to this worker, no changelog.
DEADLINES = DeadlineIndex(Path(app.conf.tabledir) / "saga-deadline-index", _stored_states,
                          retention_s=cfg.saga_retention_s)
sagas.index = DEADLINES

#: partner id -> saga id. Written by agents.partner_routing from saga-partner-routing.
partner_sagas = app.Table("partner-sagas", help="partner id -> saga id", **_common())


async def _kafka_producer() -> Producer:
    """The worker's own Kafka producer (Faust's, started with the worker): aiokafka's."""
    producer = await app.maybe_start_producer()
    return cast(Producer, cast(Any, producer)._ensure_producer())


#: The one writer of these tables (tables/writer.py): the agents write through it, a batch at
#: a time; nothing calls Faust's Table.__setitem__.
WRITER = TableWriter(_kafka_producer, [sagas, cast(faust.Table[str, bytes], partner_sagas)])
