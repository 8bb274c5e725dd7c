"""The snapshot store on the local stack's PostgreSQL, each test in a schema of its own (issue
#20): a saga's history holds each status change once however often its state is read; an
existing database with duplicated history upgrades; a retained saga's tombstone keeps its row
(ids, end status, generation) without personal data; the snapshots' own retention prunes
finished sagas only, in bounded batches; the counts are shared by every caller; /ready's ping
uses the pool and answers soon after an outage."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from snapshots.store import MIGRATIONS, SnapshotStore
from tests.support.stack import PG_URL

pytestmark = pytest.mark.stack

PII = {"nombre": "Ana Pérez", "email": "ana@example.com", "telefono": "+57 300", "direccion": "Calle 1 # 2-3"}


def state(saga_id: str, version: int, status: str, *, at: float | None = None, origin: str = "partner_event",
          partner_id: str | None = None, correlation_id: str | None = None, generation: int = 1,
          transitions: list[tuple[str | None, str]] | None = None) -> dict[str, Any]:
    """A saga state as the changelog holds it: `transitions` of this version, the last
    applied event's CreatePartner command carrying the partner's data."""
    at = time.time() if at is None else at
    event_id = f"ev-{saga_id}-{version}"
    moves = transitions if transitions is not None else [(None, status)]
    return {
        "saga_id": saga_id, "correlation_id": correlation_id or saga_id, "origin": origin, "status": status,
        "flow": "partner-creation", "generation": generation, "version": version, "partner": dict(PII),
        "partner_id": partner_id, "alliance_id": None, "created_at": at - 10, "updated_at": at,
        "applied": [{"event_id": event_id, "commands": [
            {"command_id": f"cmd-{saga_id}", "type": "CreatePartner", "destination": "integraciones",
             "data": {"partner_id": partner_id, **PII}, "attempt": 1}]}],
        "left_behind": [], "reason": None,
        "transitions": [{"version": version, "from_status": a, "to_status": b, "event_type": "PartnerCreated",
                         "event_id": event_id, "at": at} for a, b in moves],
    }


def tombstone(s: dict[str, Any], *, version: int | None = None, retained_at: float | None = None,
              current: str | None = None) -> dict[str, Any]:
    """domain.lifecycle.bury's record, field for field (tombstone first)."""
    by_partner = s["origin"] == "partner_event" and s["partner_id"]
    business_key = s["partner_id"] if by_partner else s["correlation_id"]
    return {"tombstone": True, "saga_id": s["saga_id"], "version": version or s["version"] + 1,
            "status": s["status"], "flow": s["flow"], "origin": s["origin"],
            "correlation_id": s["correlation_id"],
            "partner_id": s["partner_id"], "alliance_id": s["alliance_id"], "business_key": business_key,
            "generation": s["generation"], "created_at": s["created_at"], "ended_at": s["updated_at"],
            "retained_at": retained_at or time.time(), "reason": s["reason"], "current": current,
            "left_behind": ["a partner left in integraciones"]}


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


async def _sql(schema: str, query: str, params: Any = None, *,
               setup: str | None = None) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(PG_URL, row_factory=dict_row, autocommit=True) as conn:
        await conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
        if setup:
            await conn.execute(setup)
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


@pytest.fixture
async def schema(stack: None) -> AsyncIterator[str]:
    name = f"t-store-{uuid.uuid4().hex[:10]}"
    yield name
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name)))


@pytest.fixture
async def store(schema: str) -> AsyncIterator[SnapshotStore]:
    s = SnapshotStore(PG_URL, schema=schema)
    await s.open()
    await s.migrate()
    yield s
    await s.close()


def _changes(history: list[dict[str, Any]]) -> list[tuple[int, int, str | None, str]]:
    return [(h["version"], h["seq"], h["from_status"], h["to_status"]) for h in history]


# --- history: each status change once (defect 6)

async def test_a_state_read_twice_in_one_batch_writes_its_history_once(store: SnapshotStore) -> None:
    opened = state("s1", 1, "partner_created", transitions=[
        (None, "started"), ("started", "partner_creation_in_progress"),
        ("partner_creation_in_progress", "partner_created")])
    done = state("s1", 2, "completed", transitions=[("partner_created", "completed")])
    # The changelog held the opening state twice (written again after a redelivery), both
    # read in one batch, as the mirror's `every` list has them.
    await store.upsert_json({"s1": raw(done)}, [raw(opened), raw(opened), raw(done)])
    want = [(1, 0, None, "started"), (1, 1, "started", "partner_creation_in_progress"),
            (1, 2, "partner_creation_in_progress", "partner_created"), (2, 0, "partner_created", "completed")]
    assert _changes(await store.history("s1")) == want
    # ... and read again later (a replay after a restart, a rebuild): nothing more.
    await store.upsert_json({"s1": raw(done)}, [raw(opened), raw(done), raw(done)])
    assert _changes(await store.history("s1")) == want
    rows = await _sql(store.schema, "SELECT saga_id, version, count(*) AS n FROM saga_transitions "
                                    "GROUP BY saga_id, version ORDER BY version")
    assert [(r["version"], r["n"]) for r in rows] == [(1, 3), (2, 1)]


async def test_a_database_with_duplicated_history_upgrades_to_one_row_per_change(schema: str) -> None:
    """A database the previous version wrote: each change of a state read twice in a batch
    stored twice, under the next seqs. Upgrading keeps one of each, numbered 0, 1...,
    and no change of a version can be stored twice again, under any seq."""
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        await conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                           "applied_at timestamptz DEFAULT now())")
        for n, migration in enumerate(MIGRATIONS[:2], start=1):  # what the previous version made
            await conn.execute(migration)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (n,))
        dup = [(0, None, "started"), (1, None, "started"), (2, "started", "partner_creation_in_progress"),
               (3, "started", "partner_creation_in_progress")]
        for seq, a, b in dup:
            await conn.execute("INSERT INTO saga_transitions VALUES ('s1', 1, %s, %s, %s, 'PartnerCreated', "
                               "'ev-1', now())", (seq, a, b))
        await conn.execute("INSERT INTO saga_transitions VALUES ('s1', 2, 0, 'partner_creation_in_progress', "
                           "'partner_created', 'PartnerCreated', 'ev-2', now())")
    store = SnapshotStore(PG_URL, schema=schema)
    await store.open()
    try:
        assert await store.migrate() == len(MIGRATIONS)
        assert _changes(await store.history("s1")) == [
            (1, 0, None, "started"), (1, 1, "started", "partner_creation_in_progress"),
            (2, 0, "partner_creation_in_progress", "partner_created")]
        # A mirror of the previous version, during a rolling upgrade, writing a change again
        # under another seq: refused by the database.
        with pytest.raises(psycopg.errors.UniqueViolation):
            await _sql(schema, "INSERT INTO saga_transitions VALUES ('s1', 1, 7, NULL, 'started', "
                               "'PartnerCreated', 'ev-1', now())")
        assert await store.schema_ready()
    finally:
        await store.close()


# --- tombstones from the changelog (8b)

async def test_a_tombstone_keeps_the_row_retained_without_personal_data(store: SnapshotStore) -> None:
    done = state("s1", 5, "completed", partner_id="p-1", transitions=[("alliance_created", "completed")])
    await store.upsert_json({"s1": raw(done)})
    history = await store.history("s1")
    tomb = tombstone(done, retained_at=done["updated_at"] + 3600)
    assert raw(tomb).startswith(b'{"tombstone":true,')
    assert await store.upsert_json({}, None, {"s1": raw(tomb)}) == 1

    got = await store.get("s1")
    assert got is not None
    assert got["tombstone"] is True and got["generation"] == 1 and got["version"] == 6
    assert got["status"] == "completed" and got["partner_id"] == "p-1" and got["correlation_id"] == "s1"
    assert got["ended_at"] == pytest.approx(done["updated_at"], abs=1e-3)
    assert got["retained_at"] == pytest.approx(tomb["retained_at"], abs=1e-3)
    assert got["business_key"] == "p-1" and got["current"] is None
    # The last state stays, without the partner's personal data anywhere in it.
    assert got["transitions"] == done["transitions"] and got["flow"] == "partner-creation"
    assert got["partner"] == {}
    assert got["applied"][0]["commands"][0]["data"] == {"partner_id": "p-1"}
    stored = json.dumps((await _sql(store.schema, "SELECT state FROM saga_snapshots"))[0]["state"])
    assert not any(v in stored for v in PII.values())
    # No history row for the tombstone.
    assert await store.history("s1") == history
    rows = await _sql(store.schema, "SELECT version, retained_at IS NOT NULL AS retained, generation "
                                    "FROM saga_snapshots WHERE saga_id = 's1'")
    assert rows == [{"version": 6, "retained": True, "generation": 1}]

    # Never backwards: the saga's last state replayed, or an older tombstone, change nothing;
    # a newer tombstone (pointing to the key's next saga) is taken.
    await store.upsert_json({"s1": raw(done)}, [raw(done)])
    await store.upsert_json({}, None, {"s1": raw(tombstone(done, version=6, current="other"))})
    again = await store.get("s1")
    assert again is not None and again["version"] == 6 and again["partner"] == {} and again["current"] is None
    await store.upsert_json({}, None, {"s1": raw(tombstone(done, version=7, current="s1-g2"))})
    assert (await store.get("s1") or {})["current"] == "s1-g2"
    assert await store.versions(["s1"]) == {"s1": 7}
    # A live saga's snapshot is its state, as before.
    await store.upsert_json({"live": raw(state("live", 2, "partner_creation_in_progress"))})
    live = await store.get("live")
    assert live is not None and "tombstone" not in live and live["partner"] == PII


async def test_a_tombstone_with_no_snapshot_makes_its_row(store: SnapshotStore) -> None:
    """Snapshots rebuilt from a compacted changelog, where only the tombstone is left."""
    gone = state("s2", 4, "compensated", origin="http", correlation_id="corr-2")
    tomb = tombstone(gone)
    await store.upsert_json({}, None, {"s2": raw(tomb), "s2b": raw({**tomb, "saga_id": "s2b"})})
    got = await store.get("s2")
    assert got is not None and got["tombstone"] is True and got["status"] == "compensated"
    assert got["version"] == 5 and got["origin"] == "http" and got["business_key"] == "corr-2"
    assert got["left_behind"] == ["a partner left in integraciones"] and got["partner"] == {}
    assert await store.history("s2") == []


async def test_latest_for_key_answers_the_newest_generation(store: SnapshotStore) -> None:
    first = state("g1", 3, "completed", origin="http", correlation_id="order-7", at=time.time() - 100)
    await store.upsert_json({"g1": raw(first)})
    await store.upsert_json({}, None, {"g1": raw(tombstone(first, current="g2"))})
    latest = await store.latest_for_key("order-7")
    assert latest is not None and latest["saga_id"] == "g1" and latest["tombstone"] is True
    assert latest["ended_at"] == pytest.approx(first["updated_at"], abs=1e-3)
    second = state("g2", 1, "started", origin="http", correlation_id="order-7", generation=2)
    await store.upsert_json({"g2": raw(second)})
    latest = await store.latest_for_key("order-7", origin="http")
    assert latest is not None and latest["saga_id"] == "g2" and latest["generation"] == 2
    assert latest["tombstone"] is False and latest["ended_at"] is None
    assert isinstance(latest["updated_at"], float)
    # A partner-started saga's key is its partner id.
    by_partner = state("p", 1, "completed", partner_id="partner-9", correlation_id="x")
    await store.upsert_json({"p": raw(by_partner)})
    assert (await store.latest_for_key("partner-9") or {})["saga_id"] == "p"
    assert await store.latest_for_key("partner-9", origin="http") is None
    assert await store.latest_for_key("x") is None
    # One index look-up (the table is tiny here: the planner is told to prefer the index).
    plan = await _sql(store.schema, "EXPLAIN SELECT saga_id FROM saga_snapshots WHERE business_key = 'x' "
                                    "ORDER BY generation DESC LIMIT 1", setup="SET enable_seqscan = off")
    assert "saga_snapshots_key" in str(plan)


# --- the snapshots' own retention (8a)

async def test_prune_reduces_finished_sagas_past_retention_and_spares_the_rest(store: SnapshotStore) -> None:
    old, day = time.time() - 100 * 86400, 86400
    sagas = {
        "done-1": state("done-1", 4, "completed", at=old),
        "done-2": state("done-2", 4, "failed", at=old + 1),
        "done-3": state("done-3", 6, "compensated", at=old + 2),
        "stuck": state("stuck", 9, "compensation_failed", at=old),  # waits for a person
        "running": state("running", 2, "alliance_creation_in_progress", at=old),  # overdue, still live
        "recent": state("recent", 4, "completed", at=time.time() - 10 * day),
    }
    await store.upsert_json({k: raw(v) for k, v in sagas.items()})
    await store.upsert_json({}, None, {"done-3": raw(tombstone(sagas["done-3"]))})
    # Two per statement: three finished sagas past 90 days take two statements.
    assert await store.prune(90 * day, batch=2) == 3
    for saga_id in ("done-1", "done-2", "done-3"):
        got = await store.get(saga_id)
        assert got is not None and got["tombstone"] is True and got["pruned_at"] is not None
        assert got["partner"] == {} and got["status"] == sagas[saga_id]["status"]
        assert got["saga_id"] == saga_id and got["correlation_id"] == saga_id and got["generation"] == 1
        assert await store.history(saga_id) == []
    assert (await store.get("done-1") or {})["retained_at"] is None  # pruned, not retained by the tables
    for saga_id in ("stuck", "running", "recent"):
        got = await store.get(saga_id)
        assert got is not None and "tombstone" not in got and got["partner"] == PII
        assert len(await store.history(saga_id)) == 1
    assert await store.prune(90 * day, batch=2) == 0  # nothing left to take
    # A pruned saga's last state read again (a replay, a rebuild) brings back neither its
    # personal data nor its history.
    await store.upsert_json({"done-1": raw(sagas["done-1"])}, [raw(sagas["done-1"])])
    assert (await store.get("done-1") or {})["partner"] == {}
    assert await store.history("done-1") == []
    counts = await store.counts()
    assert counts["completed"] == 2 and counts["compensation_failed"] == 1  # the rows stay


async def test_one_store_prunes_at_a_time(store: SnapshotStore) -> None:
    old = time.time() - 100 * 86400
    await store.upsert_json({f"d{i}": raw(state(f"d{i}", 2, "completed", at=old)) for i in range(5)})
    other = SnapshotStore(PG_URL, schema=store.schema)
    await other.open()
    try:
        got = await asyncio.gather(store.prune(86400, batch=1), other.prune(86400, batch=1))
        assert sum(got) == 5
    finally:
        await other.close()


# --- counts shared by every caller (8c)

async def test_counts_are_one_query_for_every_caller_within_their_age(store: SnapshotStore) -> None:
    await store.upsert_json({f"c{i}": raw(state(f"c{i}", 1, "completed")) for i in range(3)})
    queries = 0
    fetch = store._fetch

    async def counting(sql: str, params: Any) -> list[dict[str, Any]]:
        nonlocal queries
        if "GROUP BY status" in sql:
            queries += 1
            await asyncio.sleep(0.2)  # a slow GROUP BY: the callers arriving meanwhile share it
        return await fetch(sql, params)

    store._fetch = counting  # type: ignore[method-assign]
    store.counts_max_age_s = 1.0
    answers = await asyncio.gather(*(store.counts() for _ in range(50)))
    assert queries == 1 and all(a == {"completed": 3} for a in answers)
    await store.upsert_json({"c9": raw(state("c9", 1, "failed"))})
    assert await store.counts() == {"completed": 3} and queries == 1  # within its age
    await asyncio.sleep(1.0)
    assert await store.counts() == {"completed": 3, "failed": 1} and queries == 2


# --- /ready's ping through the pool (8d)

async def test_ping_reuses_pooled_connections(store: SnapshotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = 0
    connect = psycopg.AsyncConnection.connect

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counting)
    for _ in range(30):
        await store.ping()
    assert opened <= 2  # the pool's own (before: one per ping)


async def test_the_sagas_left_of_each_definition_version_and_each_rows_schema_version(
        store: SnapshotStore) -> None:
    v1_running = state("d-1", 1, "partner_creation_in_progress")  # stored before versions: no flow_version
    v2_running = {**state("d-2", 1, "alliance_creation_in_progress"), "flow_version": 2, "sv": 2}
    v2_stuck = {**state("d-3", 1, "compensation_failed"), "flow_version": 2, "sv": 2}
    v2_done = {**state("d-4", 1, "completed"), "flow_version": 2, "sv": 2}
    alpes = {**state("d-5", 1, "awaiting_contract"), "flow": "alpes-partner", "sv": 2}
    docs = [v1_running, v2_running, v2_stuck, v2_done, alpes]
    await store.upsert_json({d["saga_id"]: raw(d) for d in docs})
    assert await store.definitions() == [
        {"flow": "alpes-partner", "version": 1, "sagas_left": 1},
        {"flow": "partner-creation", "version": 1, "sagas_left": 1},
        {"flow": "partner-creation", "version": 2, "sagas_left": 2},  # compensation_failed waits for a person
    ]
    rows = await _sql(store.schema, "SELECT saga_id, schema_version, flow_version FROM saga_snapshots "
                                    "ORDER BY saga_id")
    assert [(r["saga_id"], r["schema_version"], r["flow_version"]) for r in rows] == [
        ("d-1", 1, 1), ("d-2", 2, 2), ("d-3", 2, 2), ("d-4", 2, 2), ("d-5", 2, 1)]
    # The last saga of version 1 ends: none left of it.
    await store.upsert_json({"d-1": raw({**v1_running, "version": 2, "status": "completed"})})
    assert {(d["flow"], d["version"]) for d in await store.definitions()} == {
        ("alpes-partner", 1), ("partner-creation", 2)}
