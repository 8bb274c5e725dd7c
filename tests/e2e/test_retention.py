"""Retention: finished sagas leave the live tables after SAGA_RETENTION_S, once their final
state is in PostgreSQL, and the status endpoint answers for them from the snapshot. Live
sagas stay."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain import ids
from simulators.participants import Behaviour, _share
from tests.support.flows import ended, publish_partners
from tests.support.stack import KAFKA

pytestmark = pytest.mark.stack

RETENTION = {"SAGA_RETENTION_S": "2", "RETENTION_TICK_S": "0.5",
             # One saga stays live: its alliance never comes and its deadline is far away.
             "SAGA_CREATE_ALLIANCE_TIMEOUT_S": "600"}


async def _tombstones(topic: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        dead: set[str] = set()
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.value is None and r.key is not None:
                        dead.add(r.key.decode())
        return dead
    finally:
        await consumer.stop()


@pytest.mark.parametrize("behaviour", [Behaviour(no_reply_alliance=0.2)], ids=["some-alianzas-silent"])
async def test_finished_sagas_leave_the_tables_and_answer_from_their_snapshots(
        spawn, participants, taps, names, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=RETENTION)
    await worker.wait_ready(timeout=30)
    partners = await publish_partners(participants, 40)
    sagas = {ids.saga_id_for_partner(p) for p in partners}
    # The simulated alianzas never answers these (its choice is a function of the saga id).
    live = {s for s in sagas if _share(s, "no-reply-alliance") < behaviour.no_reply_alliance}
    finished = sagas - live
    assert finished and live, "the behaviour should leave some sagas waiting"
    await taps["lifecycle"].wait_for(lambda t: set(ended(t)) == finished, 60, "the answered sagas to end")

    async def all_expired() -> bool:
        for saga_id in finished:
            status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
            if status != 200 or body.get("source") != "snapshot":
                return False
        return True

    for _ in range(120):
        if await all_expired():
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("finished sagas still answered from the live table after 60 s")

    for saga_id in finished:  # the same JSON as before, from the snapshot
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200 and body["status"] == "completed" and body["saga_id"] == saga_id
    for saga_id in live:  # live sagas stay in the table
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200 and body["source"] == "live"
        assert body["status"] == "alliance_creation_in_progress"
    # Tombstones in the changelog, for the finished sagas only.
    assert await _tombstones(f"{names.app_id}-sagas-changelog") == finished
    _, metrics = await worker.get("/metrics")
    assert f"saga_sagas_expired_total {len(finished)}" in metrics
    # Unknown stays unknown.
    status, body = await worker.get("/api/v1/saga/status/no-such-saga")
    assert status == 404 and body["error"] == "no such saga"
