"""The snapshot mirror on the local stack's Kafka and PostgreSQL, each test with a changelog
topic and a schema of its own (issue #20): a state written twice to the changelog is one
history; a saga PostgreSQL refuses costs no other saga of its batch its history; a tombstone
marks its saga's row retained without personal data, a deletion writes nothing, and the
mirror's loop prunes finished sagas past the snapshots' retention (90 days by default)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from psycopg import sql as pgsql

from runtime.errors import StoreUnavailable
from runtime.settings import load_settings
from snapshots.mirror import ChangelogMirror, sagas_changelog
from snapshots.store import SnapshotStore
from tests.integration.test_snapshot_store import PII, raw, state, tombstone
from tests.support.stack import KAFKA, KAFKA_URL, PG_URL, drop_topics

pytestmark = pytest.mark.stack

Records = list[tuple[str, bytes | None]]


@pytest.fixture
async def app_id(stack: None) -> AsyncIterator[str]:
    name = f"t-mirror-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{name}-sagas-changelog", num_partitions=1,
                                            replication_factor=1)])
    finally:
        await admin.close()
    yield name
    await drop_topics(name)
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name)))


@pytest.fixture
async def mirrored(app_id: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        Callable[[Records, Callable[[SnapshotStore], Awaitable[bool]]], Awaitable[SnapshotStore]]]:
    """Write records to the test's changelog, run a mirror (as a worker makes it: default
    retention) until `done(store)`, stop it; the store stays open for the test."""
    for var, value in {"APP_ID": app_id, "KAFKA_BROKER_URL": KAFKA_URL, "DATABASE_URL": PG_URL,
                       "SNAPSHOT_SCHEMA": app_id}.items():
        monkeypatch.setenv(var, value)
    cfg = load_settings()
    store = SnapshotStore(PG_URL, schema=app_id)
    await store.open()

    async def run(records: Records, done: Callable[[SnapshotStore], Awaitable[bool]]) -> SnapshotStore:
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        try:
            for key, value in records:
                await producer.send(sagas_changelog(cfg), key=key.encode(), value=value)
            await producer.flush()
        finally:
            await producer.stop()
        task = asyncio.create_task(ChangelogMirror(cfg, store).run_forever())
        t0 = time.monotonic()
        try:
            while True:
                try:
                    if await done(store):
                        return store
                except StoreUnavailable:
                    pass  # the schema is not there yet
                assert time.monotonic() - t0 < 30, "the mirror did not get there in 30s"
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    yield run
    await store.close()


async def _has(store: SnapshotStore, saga_id: str, version: int) -> bool:
    got = await store.get(saga_id)
    return got is not None and got["version"] >= version


async def test_a_state_written_twice_to_the_changelog_is_one_history(mirrored) -> None:  # type: ignore[no-untyped-def]
    opened = state("s1", 1, "partner_created", transitions=[
        (None, "started"), ("started", "partner_creation_in_progress"),
        ("partner_creation_in_progress", "partner_created")])
    done = state("s1", 2, "completed", transitions=[("partner_created", "completed")])
    # The opening state twice (written again after a redelivery), read in one batch.
    store = await mirrored([("s1", raw(opened)), ("s1", raw(opened)), ("s1", raw(done))],
                           lambda st: _has(st, "s1", 2))
    assert [(h["version"], h["seq"], h["to_status"]) for h in await store.history("s1")] == [
        (1, 0, "started"), (1, 1, "partner_creation_in_progress"), (1, 2, "partner_created"),
        (2, 0, "completed")]


async def test_a_refused_saga_costs_no_other_saga_of_its_batch_its_history(mirrored) -> None:  # type: ignore[no-untyped-def]
    first = state("ok", 1, "partner_creation_in_progress", transitions=[
        (None, "started"), ("started", "partner_creation_in_progress")])
    second = state("ok", 2, "partner_created",
                   transitions=[("partner_creation_in_progress", "partner_created")])
    bad = state("bad", 1, "started")
    bad["partner"]["nombre"] = "\u0000"  # PostgreSQL's jsonb refuses a NUL character
    store = await mirrored([("ok", raw(first)), ("bad", raw(bad)), ("ok", raw(second))],
                           lambda st: _has(st, "ok", 2))
    # Before: the refused batch was written one newest state at a time; "ok" lost version 1.
    assert [(h["version"], h["to_status"]) for h in await store.history("ok")] == [
        (1, "started"), (1, "partner_creation_in_progress"), (2, "partner_created")]
    assert await store.get("bad") is None


async def test_tombstones_deletions_and_the_snapshots_retention(mirrored) -> None:  # type: ignore[no-untyped-def]
    done = state("s1", 2, "completed", partner_id="p-1", transitions=[("partner_created", "completed")])
    ancient = state("old", 3, "completed", at=time.time() - 100 * 86400)
    stuck = state("stuck", 3, "compensation_failed", at=time.time() - 100 * 86400)

    async def settled(st: SnapshotStore) -> bool:
        got, old = await st.get("s1"), await st.get("old")
        return bool(got and got.get("tombstone") and old and old.get("pruned_at"))

    # The end, the tombstone retention left in its place, a deletion (an earlier version's
    # retention), and two sagas that ended 100 days ago.
    store = await mirrored([("s1", raw(done)), ("old", raw(ancient)), ("stuck", raw(stuck)),
                            ("s1", raw(tombstone(done, retained_at=time.time()))), ("gone", None)], settled)
    got = await store.get("s1")
    assert got is not None and got["version"] == 3 and got["status"] == "completed"
    assert got["partner_id"] == "p-1" and got["generation"] == 1 and got["retained_at"] is not None
    assert not any(v in json.dumps(got) for v in PII.values())
    assert [h["to_status"] for h in await store.history("s1")] == ["completed"]  # none for the tombstone
    assert await store.get("gone") is None
    # Past the default 90 days: history and personal data gone, the row kept.
    old = await store.get("old")
    assert old is not None and old["partner"] == {} and await store.history("old") == []
    kept = await store.get("stuck")  # waits for a person: never pruned
    assert kept is not None and kept["partner"] == PII and len(await store.history("stuck")) == 1
