"""Reading and writing the deadline index (the `saga-deadlines` table).

Keys are `<window>:<saga id>` with the window (due time // WINDOW_S) zero-padded, so that
RocksDB keeps them in due order: a scan reads from the first key and stops at the first
window still in the future. A tick therefore costs the number of due (or just fired, not
yet processed) deadlines, not the number of pending sagas.

Entries are only written by the saga agent, inside the saga's event, so they live in the
partition of the saga (Faust writes table entries to the partition of the current event).
The scan reads each actively owned partition's RocksDB directly: Faust has no ordered
range read, which is why this module reaches into the store's per-partition databases.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterator
from typing import Any

from faust.types import TP

from domain.state import Deadline

__all__ = ["WINDOW_S", "deadline_event_fields", "due_entries", "due_in_db", "index_key"]

WINDOW_S = 1.0


def _window(due_at: float) -> int:
    return int(due_at // WINDOW_S)


def index_key(saga_id: str, d: Deadline) -> bytes:
    return b"%010d:%s" % (_window(d.due_at), saga_id.encode())


def deadline_event_fields(saga_id: str, d: Deadline) -> bytes:
    return json.dumps({"saga_id": saga_id, **d.model_dump(mode="json")}).encode()


def _active_partitions(table: Any) -> list[int]:
    actives = table.app.assignor.assigned_actives()
    topic = table.changelog_topic_name
    return sorted(tp.partition for tp in actives if tp == TP(topic, tp.partition))


def due_in_db(db: Any, now: float,
              skip: Container[bytes] = ()) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """(key, deadline fields) of the entries of one partition's database due at `now`; for a
    key in `skip` the fields are not decoded (None).

    Reads in key order from the first window and stops at the first window after now's:
    the cost is the number of entries in past and current windows, not the database size."""
    current = b"%010d:" % _window(now)
    last = b"%010d;" % _window(now)  # ';' sorts after ':', so the whole current window is in
    for key, value in db.items(from_key=b"0"):
        if key > last:
            break
        if key < current:  # an earlier window: due, whatever its exact time
            yield key, (None if key in skip else json.loads(value))
            continue
        fields = json.loads(value)
        if fields["due_at"] <= now:
            yield key, (None if key in skip else fields)


def due_entries(table: Any, now: float,
                skip: Container[bytes] = ()) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
    """(partition, key, deadline fields or None if skipped) of every entry due at `now`, in
    the partitions this worker actively owns."""
    dbs = table.data._dbs  # partition -> rocksdict.Rdict (raw mode)
    for p in _active_partitions(table):
        db = dbs.get(p)
        if db is not None:
            for key, fields in due_in_db(db, now, skip):
                yield p, key, fields
