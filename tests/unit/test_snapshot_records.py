"""What the snapshot mirror makes of changelog records, and what restore writes back (issue
#20): states, tombstones and deletions told apart without parsing; a retained or pruned
saga restored as its tombstone, never as a live saga; the store's statuses agree with the
domain's; the status counts are one query for every caller within their age."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from domain.lifecycle import RETAINABLE, Tombstone, bury
from domain.messages import PartnerData
from domain.state import SagaState
from snapshots.__main__ import _table_entry
from snapshots.mirror import ChangelogBatch
from snapshots.store import RETAINABLE_STATUSES, SnapshotStore
from wire.stored import SAGA_STATE, TOMBSTONE


class Record:
    def __init__(self, key: str | None, value: bytes | None) -> None:
        self.key = key.encode() if key is not None else None
        self.value = value


def _state(saga_id: str, version: int, status: str = "completed") -> SagaState:
    now = time.time()
    return SagaState(saga_id=saga_id, correlation_id=f"corr-{saga_id}", origin="http", status=status,
                     partner=PartnerData(nombre="Ana", email="ana@example.com"), partner_id=f"p-{saga_id}",
                     version=version, created_at=now - 60, updated_at=now)


def test_the_store_prunes_what_the_domain_retains() -> None:
    assert set(RETAINABLE_STATUSES) == {str(s) for s in RETAINABLE}


def test_a_batch_sorts_states_tombstones_and_deletions() -> None:
    s1, s2 = SAGA_STATE.dump(_state("a", 1, "started")), _state("a", 2)
    c3 = SAGA_STATE.dump(_state("c", 3))
    tomb = TOMBSTONE.dump(bury(s2, time.time()))
    batch = ChangelogBatch.of([
        Record("a", s1), Record("b", None), Record("a", SAGA_STATE.dump(s2)),
        Record("a", SAGA_STATE.dump(s2)), Record("c", c3), Record("a", tomb), Record(None, b"{}"),
    ])
    # The newest state of each saga for its row, its tombstone apart (written after it).
    assert batch.newest == {"a": SAGA_STATE.dump(s2), "c": c3}
    assert batch.tombstones == {"a": tomb}
    # Every state for the history, in changelog order (a state read twice is the store's to
    # count once); tombstones and deletions add none.
    assert [k for k, _ in batch.keyed] == ["a", "a", "a", "c"]
    assert all(not Tombstone.is_one(v) for v in batch.every)
    assert not ChangelogBatch.of([Record("b", None)])


def test_the_mirror_writes_records_of_an_older_version_in_the_current_one() -> None:
    state = _state("a", 2)
    tomb = bury(state, time.time())
    v1_state, v1_tomb = state.model_dump_json().encode(), tomb.model_dump_json().encode()  # no "sv"
    batch = ChangelogBatch.of([Record("a", v1_state), Record("a", v1_tomb), Record("x", b'{"saga_id": 1}')])
    assert batch.newest["a"] == SAGA_STATE.dump(state) and batch.tombstones == {"a": TOMBSTONE.dump(tomb)}
    # One that does not read stays as it is: PostgreSQL refuses it with its reason.
    assert batch.newest["x"] == b'{"saga_id": 1}'


def _snapshot_of(state: SagaState, **row: Any) -> dict[str, Any]:
    """SnapshotStore.get's answer for a retained (or pruned) saga."""
    doc = json.loads(state.model_dump_json())
    doc["partner"] = {}
    return {**doc, "tombstone": True, "business_key": state.correlation_id,
            "ended_at": state.updated_at, "current": None, "pruned_at": None, **row}


def test_restore_writes_a_retained_saga_back_as_its_tombstone() -> None:
    last = _state("r", 7)
    snapshot = _snapshot_of(last, version=8, retained_at=123.0, generation=2)
    saga_id, partner_id, value = _table_entry(snapshot, 999.0)
    assert (saga_id, partner_id) == ("r", "p-r")
    assert Tombstone.is_one(value) and b"ana@example.com" not in value
    tomb = Tombstone.model_validate_json(value)
    assert tomb.version == 8 and tomb.status == "completed" and tomb.generation == 2
    assert tomb.retained_at == 123.0 and tomb.ended_at == last.updated_at
    assert tomb.business_key == "corr-r" and tomb.origin == "http"


def test_restore_writes_a_saga_pruned_but_never_retained_as_a_tombstone_above_its_last_state() -> None:
    last = _state("p", 4, "failed")
    snapshot = _snapshot_of(last, version=4, retained_at=None, pruned_at=50.0, generation=1)
    value = _table_entry(snapshot, 999.0)[2]
    tomb = Tombstone.model_validate_json(value)
    assert tomb.version == 5 and tomb.status == "failed" and tomb.retained_at == 50.0


def test_restore_writes_a_live_saga_as_its_state() -> None:
    live = _state("l", 3, "alliance_creation_in_progress")
    _, partner_id, value = _table_entry(json.loads(live.model_dump_json()), 999.0)
    assert SagaState.model_validate_json(value) == live and partner_id == "p-l"


async def test_counts_are_one_query_for_every_concurrent_caller() -> None:
    """No database: the query itself is replaced by a slow stand-in that counts its calls.
    Before, every caller (a dashboard tab every 2 s) ran its own GROUP BY."""
    store = SnapshotStore("postgresql://nobody@127.0.0.1:1/none", counts_max_age_s=60)
    queries = 0

    async def fetch(sql: str, params: Any) -> list[dict[str, Any]]:
        nonlocal queries
        queries += 1
        await asyncio.sleep(0.05)
        return [{"status": "completed", "n": 3}]

    store._fetch = fetch  # type: ignore[method-assign]
    answers = await asyncio.gather(*(store.counts() for _ in range(100)))
    assert queries == 1 and answers == [{"completed": 3}] * 100
    answers[0]["completed"] = 0  # a caller's copy, not the cache
    assert await store.counts() == {"completed": 3} and queries == 1


async def test_a_failed_count_reaches_its_callers_and_the_next_call_tries_again() -> None:
    store = SnapshotStore("postgresql://nobody@127.0.0.1:1/none")
    calls = 0

    async def fetch(sql: str, params: Any) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("down")
        return [{"status": "failed", "n": 1}]

    store._fetch = fetch  # type: ignore[method-assign]
    results = await asyncio.gather(store.counts(), store.counts(), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await store.counts() == {"failed": 1}
