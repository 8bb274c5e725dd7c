"""The deadline index: which sagas wait for a deadline, in due order, per partition; and
beside it, which finished sagas leave the live tables when (retention).

A saga's deadline is part of its state in the `sagas` table; this index only says which
sagas to look at when. It is derived from the table, so it needs no changelog of its own:
- the saga agent moves a saga's entry when it writes a new state (a local write, no record
  to Kafka);
- the `sagas` table's changelog, when a worker replays it (recovery, standby replicas),
  adds the entries of the states it applies (`SagaTable.apply_changelog_batch`);
- an index opened for the first time for a partition (a new worker version, or the index
  directory lost) is built from that partition's stored states.
Entries are never trusted alone: before a deadline fires, the timer checks it against the
saga's stored state, and drops an entry the saga has moved past (`DeadlineIndex.check`).
So a lost removal costs a lookup once, and an entry for every state a replay went through
costs nothing more.

Keys are `<window>:<saga id>` with the window (due time // WINDOW_S) zero-padded, so that
RocksDB keeps them in due order: a scan reads from the first key and stops at the first
window still in the future. A tick therefore costs the number of due entries, not the
number of waiting sagas. Retention entries are `r<window>:<saga id>` (the window of the
saga's last update + SAGA_RETENTION_S), kept for every finished saga the same three ways and
checked the same way; they sort after every deadline key. One local RocksDB (rocksdict) per
partition, under the worker's table directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict
from rocksdict import BlockBasedOptions, Cache, Options, Rdict

from domain.lifecycle import RETAINABLE
from domain.state import Deadline
from wire.stored import stamp

__all__ = ["INDEX_VERSION", "WINDOW_S", "DeadlineIndex", "deadline_event_fields", "due_in_db", "index_key",
           "retention_key"]

log = logging.getLogger(__name__)

WINDOW_S = 1.0
_BUILT = b"~built"  # sorts after every window key: a scan never reaches it
#: The index's schema version, the value of its `~built` marker (1 until release 0.3.0, whose
#: entries carry it too). An index built by another version is built again from the states:
#: it is derived, so an upgrade rebuilds it rather than upcasting its entries.
INDEX_VERSION = 2


class _Stored(BaseModel):
    """What the index reads of a stored `sagas` value: a saga's state (domain.state.SagaState)
    or a retained saga's tombstone (domain.lifecycle.Tombstone). Parsed by field name, so a
    field added to the state cannot break it; every other field is skipped by the parser."""

    model_config = ConfigDict(extra="ignore")

    tombstone: bool = False
    status: str = ""
    version: int = 0
    updated_at: float = 0.0
    partner_id: str | None = None
    deadline: dict[str, Any] | None = None


def _read(value: bytes | None) -> _Stored | None:
    """The stored value's fields, or None for no value or one that is not a saga's (Faust
    keeps its offset, a bare number, in the same database)."""
    if value is None or not value.startswith(b"{"):
        return None
    return _Stored.model_validate_json(value)


def _window(due_at: float) -> int:
    return int(due_at // WINDOW_S)


def index_key(saga_id: str, d: Deadline) -> bytes:
    return b"%010d:%s" % (_window(d.due_at), saga_id.encode())


def deadline_event_fields(saga_id: str, d: Deadline) -> bytes:
    fields = {"saga_id": saga_id, **d.model_dump(mode="json")}
    return stamp(json.dumps(fields, separators=(",", ":")).encode(), INDEX_VERSION)


def due_in_db(db: Any, now: float, skip: Mapping[bytes, bytes] | None = None,
              from_key: bytes = b"0") -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """(key, deadline fields) of the entries of one partition's index due at `now`; for an
    entry `skip` holds (its key, with the same value: the same deadline, not a later one of
    the saga's in the same window) the fields are not decoded (None).

    Reads in key order from `from_key` (the first window) and stops at the first window
    after now's: the cost is the number of entries in past and current windows, not the
    database size."""
    current = b"%010d:" % _window(now)
    last = b"%010d;" % _window(now)  # ';' sorts after ':', so the whole current window is in
    skip = skip or {}
    for key, value in db.items(from_key=from_key):
        if key > last:
            break
        skipped = skip.get(key) == value
        if key < current:  # an earlier window: due, whatever its exact time
            yield key, (None if skipped else json.loads(value))
            continue
        fields = json.loads(value)
        if fields["due_at"] <= now:
            yield key, (None if skipped else fields)


def _options() -> Options:
    """Small memory: the index holds short keys, and rocksdict's defaults (64 MiB write
    buffers per database) would cost more than the sagas table itself."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(2 * 1024**2)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(2 * 1024**2))
    options.set_block_based_table_factory(table)
    return options


def _stored_deadline(state: bytes | None) -> dict[str, Any] | None:
    stored = _read(state)
    return None if stored is None else stored.deadline


def _finished_at(stored: _Stored | None) -> float | None:
    """When a stored saga that retention may remove ended; None for a live one, one that
    waits for a person (compensation_failed), a tombstone, or no state."""
    if stored is None or stored.tombstone or stored.status not in RETAINABLE:
        return None
    return stored.updated_at


def retention_key(saga_id: str, expires_at: float) -> bytes:
    return b"r%010d:%s" % (_window(expires_at), saga_id.encode())


class DeadlineIndex:
    """The index of one worker: a local RocksDB per partition it holds (active or standby).

    `states(partition)` gives the `sagas` table's database of that partition (raw keys and
    values), which the index is built from and checked against."""

    def __init__(self, folder: Path, states: Callable[[int], Any], *,
                 retention_s: float = 7 * 86400.0) -> None:
        self.folder = folder
        self._states = states
        self.retention_s = retention_s
        self._dbs: dict[int, Rdict] = {}
        # Per partition, where the last scan found its first entry: every key before it had
        # been deleted. Scans start there instead of at the first window, so the tombstones
        # RocksDB keeps for removed entries until it compacts are not walked over every tick
        # (a million forgotten sagas slowed retention from 6,000/s to 1,500/s). A key put
        # below a cursor moves it back.
        self._due_from: dict[int, bytes] = {}
        self._expiry_from: dict[int, bytes] = {}

    def db(self, partition: int) -> Rdict:
        db = self._dbs.get(partition)
        if db is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            db = self._dbs[partition] = Rdict(str(self.folder / f"{partition}.db"), _options())
            built = db.get(_BUILT)
            if built != b"%d" % INDEX_VERSION:
                if built is not None:
                    log.info("deadline index: partition %d was built by index version %s, this is %d: "
                             "building it again", partition, built.decode(errors="replace"), INDEX_VERSION)
                for key in list(db.keys()):  # an older version's entries (none in a new index)
                    del db[key]
                self._build(partition, db)
        return db

    def _build(self, partition: int, db: Rdict) -> None:
        """Index every waiting saga the partition's stored states hold."""
        n = 0
        for key, value in self._states(partition).items():
            n += self._index_state(partition, db, key, value)
        db[_BUILT] = b"%d" % INDEX_VERSION
        if n:
            log.info("deadline index: partition %d built from %d stored states", partition, n)

    def _put(self, partition: int, db: Rdict, key: bytes, value: bytes) -> None:
        db[key] = value
        cursors = self._expiry_from if key[:1] == b"r" else self._due_from
        if key < cursors.get(partition, key):
            cursors[partition] = key

    def _index_state(self, partition: int, db: Rdict, key: bytes | None, value: bytes | None) -> int:
        stored = _read(value)
        if key is None or stored is None:
            return 0
        if stored.deadline is not None:
            saga_id = key.decode()
            d = Deadline.model_validate(stored.deadline)
            self._put(partition, db, index_key(saga_id, d), deadline_event_fields(saga_id, d))
            return 1
        finished = _finished_at(stored)
        if finished is not None:
            self._put(partition, db, retention_key(key.decode(), finished + self.retention_s), b"")
            return 1
        return 0

    def move(self, partition: int, saga_id: str, old: Deadline | None, new: Deadline | None) -> None:
        """The saga's deadline changed from `old` to `new` (either may be None)."""
        if old == new:
            return
        db = self.db(partition)
        if old is not None:
            del db[index_key(saga_id, old)]
        if new is not None:
            self._put(partition, db, index_key(saga_id, new), deadline_event_fields(saga_id, new))

    def put(self, partition: int, saga_id: str, d: Deadline) -> None:
        self._put(partition, self.db(partition), index_key(saga_id, d), deadline_event_fields(saga_id, d))

    def finished(self, partition: int, saga_id: str, updated_at: float) -> None:
        """A finished saga was written: it expires SAGA_RETENTION_S after `updated_at`."""
        self._put(partition, self.db(partition), retention_key(saga_id, updated_at + self.retention_s), b"")

    def on_changelog(self, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> None:
        """Index the deadlines and expiries of replayed `sagas` changelog records (partition,
        key, value)."""
        for partition, key, value in records:
            self._index_state(partition, self.db(partition), key, value)

    def expired(self, partitions: Iterable[int], now: float,
                limit: int) -> list[tuple[int, str, int, str | None]]:
        """Up to `limit` finished sagas whose retention ran out at `now`: (partition, saga id,
        stored version, partner id). Entries that no longer hold (the saga changed or is gone) are
        dropped, or moved to the saga's later expiry."""
        found: list[tuple[int, str, int, str | None]] = []
        last = b"r%010d;" % _window(now)
        for p in partitions:
            db, states = self.db(p), self._states(p)
            first_kept: bytes | None = None
            moved: list[bytes] = []
            # The index is in raw mode (_options): its keys are bytes.
            entries = cast("Iterator[tuple[bytes, bytes]]", db.items(from_key=self._expiry_from.get(p, b"r")))
            for key, _ in entries:
                if key > last or len(found) >= limit:
                    first_kept = first_kept or key
                    break
                saga_id = key[12:].decode()
                stored = _read(states.get(saga_id.encode()))
                finished = _finished_at(stored)
                if finished is None:  # live again, gone, or no longer for retention
                    del db[key]
                    continue
                expires = finished + self.retention_s
                if expires > now:  # updated since: it expires later
                    del db[key]
                    moved.append(retention_key(saga_id, expires))
                    db[moved[-1]] = b""
                    continue
                first_kept = first_kept or key
                assert stored is not None
                found.append((p, saga_id, stored.version, stored.partner_id))
            # Everything before the first entry kept was removed or moved (no await in here:
            # nothing else wrote meanwhile).
            self._expiry_from[p] = min([first_kept or last, *moved])
        return found

    def forget(self, partition: int, saga_id: str, updated_at: float) -> None:
        """The saga left the live tables: its expiry entry goes too."""
        del self.db(partition)[retention_key(saga_id, updated_at + self.retention_s)]

    def due(self, partitions: Iterable[int], now: float,
            skip: Mapping[bytes, bytes] | None = None) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
        """(partition, key, deadline fields or None if skipped) of every entry due at `now`;
        `skip`: key -> value of entries not to fire now (see `due_in_db`)."""
        for p in partitions:
            db = self.db(p)
            start = self._due_from.get(p, b"0")
            # Within the current window keys are in saga-id order, not due order: a scan
            # never moves the cursor past the window's start, whose later keys may not be due.
            window_start = b"%010d:" % _window(now)
            first: bytes | None = None
            for key, fields in due_in_db(db, now, skip, from_key=start):
                if first is None:
                    first = key
                    self._due_from[p] = min(key, window_start)
                yield p, key, fields
            if first is None:  # nothing due: every entry left is in this window or later
                self._due_from[p] = max(start, window_start)

    def entry(self, partition: int, key: bytes) -> bytes | None:
        """The index's value under `key` (a deadline's fields as stored)."""
        value = self.db(partition).get(key)
        return None if value is None else bytes(value)

    def check(self, partition: int, key: bytes, fields: dict[str, Any]) -> bool:
        """Is this entry the saga's current deadline? If not, it leaves the index."""
        stored = _stored_deadline(self._states(partition).get(fields["saga_id"].encode()))
        if stored is not None and all(stored.get(k) == fields[k] for k in stored):
            return True
        del self.db(partition)[key]
        return False

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
