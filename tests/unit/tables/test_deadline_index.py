"""The deadline index on a real RocksDB (rocksdict, raw mode, as Faust opens it): due entries
come back in order, future windows are not read, and only active partitions are scanned."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from faust.types import TP
from rocksdict import Options, Rdict

from domain.state import Deadline
from tables.deadline_index import deadline_event_fields, due_entries, due_in_db, index_key

NOW = 1_800_000_000.0


def _deadline(due_at: float) -> Deadline:
    return Deadline(due_at=due_at, step="create_alliance", phase="forward", kind="reply", attempt=1)


def _db(path: Path, dues: dict[str, float]) -> Rdict:
    db = Rdict(str(path), Options(raw_mode=True))
    for saga_id, due in dues.items():
        db[index_key(saga_id, _deadline(due))] = deadline_event_fields(saga_id, _deadline(due))
    db[b"__faust\x00offset__"] = b"42"  # Faust keeps its offset in the same database
    return db


def test_due_entries_in_due_order_and_nothing_from_the_future(tmp_path: Path) -> None:
    db = _db(tmp_path / "p0", {"late": NOW - 100, "now": NOW, "later-this-second": NOW + 0.5,
                               "soon": NOW + 5, "tomorrow": NOW + 86_400})
    got = [(f["saga_id"], f["due_at"]) for _, f in due_in_db(db, NOW)]
    assert got == [("late", NOW - 100), ("now", NOW)]
    db.close()


def test_only_partitions_this_worker_actively_owns_are_scanned(tmp_path: Path) -> None:
    dbs = {p: _db(tmp_path / f"p{p}", {f"saga-{p}": NOW - 1}) for p in range(3)}
    changelog = "app-saga-deadlines-changelog"
    # Partition 1 is a standby here (not active); partition 2 is active for another topic only.
    actives = {TP(changelog, 0), TP("app-events", 0), TP("app-events", 2)}
    table = SimpleNamespace(
        changelog_topic_name=changelog, data=SimpleNamespace(_dbs=dbs),
        app=SimpleNamespace(assignor=SimpleNamespace(assigned_actives=lambda: actives)))
    assert [(p, f["saga_id"]) for p, _, f in due_entries(table, NOW)] == [(0, "saga-0")]
    for db in dbs.values():
        db.close()
