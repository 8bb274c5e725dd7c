"""A replayed `sagas` changelog record never takes a saga back to an older version than the
store holds (tables/replay.py): what a standby buffer flushed after a takeover would do."""

from __future__ import annotations

from dataclasses import dataclass

from tables.replay import newer_only, stored_version


@dataclass
class _Record:
    partition: int
    key: bytes | None
    value: bytes | None


def _state(version: int, status: str = "alliance_creation_in_progress") -> bytes:
    return (b'{"saga_id":"s","status":"%s","flow":"partner-creation","flow_version":1,"generation":1,'
            b'"version":%d,"partner":{"version":99},"sv":2}' % (status.encode(), version))


def test_the_version_is_the_sagas_not_the_flows_nor_a_nested_one() -> None:
    assert stored_version(_state(7)) == 7
    assert stored_version(b'{"tombstone":true,"saga_id":"s","version":12,"sv":2}') == 12
    assert stored_version(b'{"flow_version":3}') is None
    assert stored_version(None) is None and stored_version(b"") is None


def test_a_state_older_than_the_stored_one_is_skipped_the_rest_applied_in_order() -> None:
    store = {(7, b"s"): _state(2, "completed"), (7, b"t"): _state(1)}
    records = [
        _Record(7, b"s", _state(1)),              # stale: the store has version 2
        _Record(7, b"t", _state(1)),              # the same version: applied again (idempotent)
        _Record(7, b"t", _state(2)),              # newer
        _Record(7, b"t", _state(1)),              # older than the batch's own record before it
        _Record(7, b"u", _state(1)),              # nothing stored
        _Record(7, b"u", None),                   # a deletion: always applied
        _Record(7, b"u", _state(1)),              # after the deletion: applied
        _Record(3, b"s", _state(1)),              # another partition's store knows nothing of it
    ]
    kept, skipped = newer_only(records, lambda p, k: store.get((p, k)))
    assert kept == [1, 2, 4, 5, 6, 7] and skipped == 2


def test_the_takeover_case_the_standby_buffer_flushed_after_the_agent_wrote() -> None:
    """The agent completed the saga at version 2; the standby buffer then replays versions 1
    and 2 again: nothing goes back to version 1."""
    store = {(7, b"c42ab341"): _state(2, "completed")}
    kept, skipped = newer_only([_Record(7, b"c42ab341", _state(1))], lambda p, k: store.get((p, k)))
    assert (kept, skipped) == ([], 1)
    replayed = [_Record(7, b"c42ab341", _state(1)), _Record(7, b"c42ab341", _state(2, "completed"))]
    kept, _ = newer_only(replayed, lambda p, k: store.get((p, k)))
    assert kept == [1]
