"""The deadline index on a real RocksDB (rocksdict, raw mode): due entries come back in
order, future windows are not read; the index is built from stored states, follows moves
and replayed changelog records, and drops an entry the saga has moved past."""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

from domain.state import Deadline
from tables.deadline_index import DeadlineIndex, deadline_event_fields, due_in_db, index_key

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


def _state(saga_id: str, d: Deadline | None) -> bytes:
    """A stored state as the agent writes it (only the fields the index reads matter)."""
    deadline = "null" if d is None else d.model_dump_json()
    return b'{"saga_id":"%s","deadline":%s,"status":"x"}' % (saga_id.encode(), deadline.encode())


def _index(tmp_path: Path, states: dict[int, dict[str, Deadline | None]]) -> DeadlineIndex:
    stores = {}
    for p, sagas in states.items():
        stores[p] = Rdict(str(tmp_path / f"states-{p}"), Options(raw_mode=True))
        for saga_id, d in sagas.items():
            stores[p][saga_id.encode()] = _state(saga_id, d)
        stores[p][b"__faust\x00offset__"] = b"42"
    return DeadlineIndex(tmp_path / "index", lambda p: stores[p])


def test_a_new_index_is_built_from_the_stored_states(tmp_path: Path) -> None:
    index = _index(tmp_path, {0: {"waits": _deadline(NOW - 1), "done": None,
                                  "later": _deadline(NOW + 60)}, 1: {"other": _deadline(NOW - 2)}})
    assert [(p, f["saga_id"]) for p, _, f in index.due([0], NOW) if f] == [(0, "waits")]
    assert [(p, f["saga_id"]) for p, _, f in index.due([0, 1], NOW) if f] == [(0, "waits"), (1, "other")]
    index.close()


def test_moving_a_deadline_and_replayed_changelog_records(tmp_path: Path) -> None:
    index = _index(tmp_path, {0: {}})
    index.move(0, "s1", None, _deadline(NOW - 5))
    index.move(0, "s1", _deadline(NOW - 5), _deadline(NOW + 5))
    assert list(index.due([0], NOW)) == []
    index.on_changelog([(0, b"s2", _state("s2", _deadline(NOW - 1))), (0, b"s3", _state("s3", None)),
                        (0, b"s4", None)])
    assert [f["saga_id"] for _, _, f in index.due([0], NOW) if f] == ["s2"]
    index.close()


def test_an_entry_the_saga_moved_past_leaves_the_index_when_checked(tmp_path: Path) -> None:
    # The removal of s1's old entry was lost (a crash); s2's state is gone; s3 is current.
    index = _index(tmp_path, {0: {"s1": _deadline(NOW + 30), "s3": _deadline(NOW - 1)}})
    index.put(0, "s1", _deadline(NOW - 3))
    index.put(0, "s2", _deadline(NOW - 2))
    checked = {f["saga_id"]: index.check(p, key, f) for p, key, f in index.due([0], NOW) if f}
    assert checked == {"s1": False, "s2": False, "s3": True}
    assert [f["saga_id"] for _, _, f in index.due([0], NOW) if f] == ["s3"]
    index.close()


def test_the_index_survives_a_restart_without_a_rebuild(tmp_path: Path) -> None:
    index = _index(tmp_path, {0: {}})
    index.move(0, "s1", None, _deadline(NOW - 1))
    index.close()
    again = _index(tmp_path / "other-states", {0: {}})  # empty stored states: no rebuild wanted
    again.folder = tmp_path / "index"
    assert [f["saga_id"] for _, _, f in again.due([0], NOW) if f] == ["s1"]
    again.close()


def _finished(saga_id: str, updated_at: float, version: int = 3, status: str = "completed") -> bytes:
    return (b'{"saga_id":"%s","status":"%s","version":%d,"deadline":null,"updated_at":%r,'
            b'"applied":[{"commands":[{"data":{"status":"started"}}]}]}'
            % (saga_id.encode(), status.encode(), version, updated_at))


def test_finished_sagas_expire_after_the_retention_and_only_while_unchanged(tmp_path: Path) -> None:
    stores = {0: Rdict(str(tmp_path / "states"), Options(raw_mode=True))}
    stores[0][b"old"] = _finished("old", NOW - 100, version=7)
    stores[0][b"recent"] = _finished("recent", NOW - 5)
    stores[0][b"live"] = _state("live", _deadline(NOW + 30))
    index = DeadlineIndex(tmp_path / "index", lambda p: stores[p], retention_s=60)
    assert index.expired([0], NOW, limit=10) == [(0, "old", 7, None)]  # built from the states
    # "old" was updated since (a late reply), "recent" became live again (an operator retry),
    # a replayed record finishes "replayed" long ago.
    stores[0][b"old"] = _finished("old", NOW - 30, version=8)
    stores[0][b"recent"] = _state("recent", _deadline(NOW + 30))
    index.on_changelog([(0, b"replayed", _finished("replayed", NOW - 500, status="compensated"))])
    stores[0][b"replayed"] = _finished("replayed", NOW - 500, version=4, status="compensated")
    assert index.expired([0], NOW, limit=10) == [(0, "replayed", 4, None)]
    # In expiry order, at most `limit`.
    assert index.expired([0], NOW + 31, limit=10) == [(0, "replayed", 4, None), (0, "old", 8, None)]
    assert index.expired([0], NOW + 31, limit=1) == [(0, "replayed", 4, None)]
    index.forget(0, "old", NOW - 30)
    del stores[0][b"replayed"]  # left the table
    assert index.expired([0], NOW + 1000, limit=10) == []
    index.close()


def test_a_saga_waiting_for_an_operator_or_a_tombstone_never_expires(tmp_path: Path) -> None:
    """compensation_failed needs a person: retention never removes it (issue #20, defect 1).
    A tombstone is what retention leaves; it stays."""
    stores = {0: Rdict(str(tmp_path / "states"), Options(raw_mode=True))}
    stores[0][b"stuck"] = _finished("stuck", NOW - 500, version=4, status="compensation_failed")
    stores[0][b"buried"] = (b'{"tombstone":true,"saga_id":"buried","version":5,"status":"completed",'
                            b'"updated_at":1.0,"ended_at":1.0}')
    index = DeadlineIndex(tmp_path / "index", lambda p: stores[p], retention_s=1)
    index.on_changelog([(0, b"stuck", stores[0][b"stuck"])])
    index.finished(0, "stuck", NOW - 500)  # as an older version wrote it
    index.finished(0, "buried", 1.0)
    assert index.expired([0], NOW + 10_000, limit=10) == []
    index.close()


def test_stored_states_are_read_by_field_name_not_position(tmp_path: Path) -> None:
    """A state whose fields come in another order (a field added before `status`, commands
    first) is read right (issue #20, defect 7: the index used to take the first "status" and
    "updated_at" in the bytes)."""
    stores = {0: Rdict(str(tmp_path / "states"), Options(raw_mode=True))}
    stores[0][b"live"] = (b'{"applied":[{"commands":[{"data":{"status":"completed"}}]}],"updated_at_hint":5,'
                          b'"saga_id":"live","status":"compensating","version":2,"deadline":null,'
                          b'"updated_at":1.0}')
    stores[0][b"done"] = (b'{"note":{"status":"compensating","updated_at":99999999999.0},"saga_id":"done",'
                          b'"version":6,"deadline":null,"updated_at":%r,"status":"completed"}' % (NOW - 500))
    index = DeadlineIndex(tmp_path / "index", lambda p: stores[p], retention_s=60)
    assert index.expired([0], NOW, limit=10) == [(0, "done", 6, None)]
    index.close()


def test_a_live_saga_is_never_in_the_retention_entries(tmp_path: Path) -> None:
    stores = {0: Rdict(str(tmp_path / "states"), Options(raw_mode=True))}
    # Its commands mention a finished status; its own status is live.
    stores[0][b"s"] = (b'{"saga_id":"s","status":"compensating","version":2,"deadline":null,'
                       b'"updated_at":1.0,"applied":[{"data":{"status":"compensation_failed"}}]}')
    index = DeadlineIndex(tmp_path / "index", lambda p: stores[p], retention_s=1)
    index.finished(0, "s", 1.0)  # written when it was finished; an operator retry revived it
    assert index.expired([0], NOW, limit=10) == []
    index.close()


def test_scans_resume_where_entries_remain_and_see_entries_put_behind(tmp_path: Path) -> None:
    stores = {0: Rdict(str(tmp_path / "states"), Options(raw_mode=True))}
    index = DeadlineIndex(tmp_path / "index", lambda p: stores[p], retention_s=10)
    for i in range(50):  # deadlines fired and moved on: the scan cursor passes them
        index.move(0, f"s{i}", None, _deadline(NOW - 100 + i))
    assert len([k for _, k, _ in index.due([0], NOW)]) == 50
    for i in range(50):
        index.move(0, f"s{i}", _deadline(NOW - 100 + i), None)
    assert list(index.due([0], NOW)) == []
    # A replayed record (a standby catching up) puts an old deadline behind the cursor.
    stores[0][b"late"] = _state("late", _deadline(NOW - 500))
    index.on_changelog([(0, b"late", stores[0][b"late"])])
    index.move(0, "next", None, _deadline(NOW + 5))
    assert [f["saga_id"] for _, _, f in index.due([0], NOW) if f] == ["late"]
    assert [f["saga_id"] for _, _, f in index.due([0], NOW + 6) if f] == ["late", "next"]
    # Expiries likewise: forgotten ones are not walked again; a replayed old one is found.
    for i in range(20):
        stores[0][f"f{i}".encode()] = _finished(f"f{i}", NOW - 100 + i)
        index.finished(0, f"f{i}", NOW - 100 + i)
    assert len(index.expired([0], NOW, limit=100)) == 20
    for i in range(20):
        index.forget(0, f"f{i}", NOW - 100 + i)
        del stores[0][f"f{i}".encode()]
    assert index.expired([0], NOW, limit=100) == []
    stores[0][b"old"] = _finished("old", NOW - 1000, version=9)
    index.on_changelog([(0, b"old", stores[0][b"old"])])
    assert index.expired([0], NOW, limit=100) == [(0, "old", 9, None)]
    index.close()


def test_an_entry_not_yet_due_in_the_current_window_is_not_skipped(tmp_path: Path) -> None:
    # Keys within a window sort by saga id: "a" (due later) sorts before "z" (due now).
    index = _index(tmp_path, {0: {"a": _deadline(NOW + 0.5), "z": _deadline(NOW + 0.1)}})
    assert [f["saga_id"] for _, _, f in index.due([0], NOW + 0.2) if f] == ["z"]
    assert [f["saga_id"] for _, _, f in index.due([0], NOW + 0.6) if f] == ["a", "z"]
    index.close()
