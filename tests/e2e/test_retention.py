"""Retention: finished sagas leave the live tables after SAGA_RETENTION_S, once their final
state is in PostgreSQL, a tombstone in their place, and the status endpoint answers for them
from the snapshot. Live sagas, and sagas waiting for an operator, stay; a repeated start of
a retained saga is a duplicate of it, not a second saga (issue #20)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain import ids
from domain.privacy import redacted_message
from simulators.participants import Behaviour, _share
from tests.support.flows import ended, partner_created, publish_partners
from tests.support.stack import KAFKA
from tests.support.worker import OPERATOR_TOKEN

pytestmark = pytest.mark.stack

RETENTION = {"SAGA_RETENTION_S": "2", "RETENTION_TICK_S": "0.5",
             # One saga stays live: its alliance never comes and its deadline is far away.
             "SAGA_CREATE_ALLIANCE_TIMEOUT_S": "600"}


async def _tombstones(topic: str) -> dict[str, bytes]:
    """The changelog's tombstone records (what retention leaves of a saga), by saga id."""
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
        buried: dict[str, bytes] = {}
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.value is not None and r.key is not None and r.value.startswith(b'{"tombstone":true'):
                        buried[r.key.decode()] = r.value
        return buried
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
    # Tombstones in the changelog, for the finished sagas only, without personal data.
    buried = await _tombstones(f"{names.app_id}-sagas-changelog")
    assert set(buried) == finished
    assert all(b"@example.com" not in v and b"Calle" not in v for v in buried.values())
    _, metrics = await worker.get("/metrics")
    assert f"saga_sagas_expired_total {len(finished)}" in metrics
    # Unknown stays unknown.
    status, body = await worker.get("/api/v1/saga/status/no-such-saga")
    assert status == 404 and body["error"] == "no such saga"


AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def _retained(worker, saga_id: str, within_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(within_s / 0.5)):
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        if status == 200 and body.get("source") == "snapshot":
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"saga {saga_id} still in the live table after {within_s}s")


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=1.0, fail_revert=1.0)], ids=["undo-fails"])
async def test_a_saga_waiting_for_an_operator_outlives_retention_and_its_retry_compensates(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_RETENTION_S": "5", "RETENTION_TICK_S": "1", "SAGA_UNDO_MAX_ATTEMPTS": "2",
                        "SAGA_BACKOFF_S": "0.2"})
    await worker.wait_ready(timeout=30)
    (stuck_partner,) = await publish_partners(participants, 1)
    stuck = ids.saga_id_for_partner(stuck_partner)
    await taps["lifecycle"].wait_for(lambda t: stuck in ended(t), 30, "the saga to give up its undo")
    status, body = await worker.get(f"/api/v1/saga/status/{stuck}")
    assert body["status"] == "compensation_failed"
    # A saga ending later, whose undo works, is retained: retention ran past the stuck one.
    participants.behaviour.fail_revert = 0.0
    (witness_partner,) = await publish_partners(participants, 1)
    witness = ids.saga_id_for_partner(witness_partner)
    await _retained(worker, witness)
    status, body = await worker.get(f"/api/v1/saga/status/{stuck}")
    # Before: gone from the table, and a retry answered 202 and did nothing.
    assert status == 200 and body["source"] == "live" and body["status"] == "compensation_failed"

    status, body = await worker.post(f"/api/v1/sagas/{stuck}/retry", headers=AUTH)
    assert status == 202
    await taps["lifecycle"].wait_for(lambda t: "SagaCompensated" in ended(t).get(stuck, []), 30,
                                     "the retried compensation")
    # An operator action on a retained saga is refused with the reason, never 202.
    status, body = await worker.post(f"/api/v1/sagas/{witness}/retry", headers=AUTH)
    assert status == 409 and "error" in body, body
    status, body = await worker.post(f"/api/v1/sagas/{witness}/cancel", headers=AUTH)
    assert status == 409 and "error" in body, body


async def test_a_partner_created_repeated_after_retention_is_a_duplicate_of_the_finished_saga(
        spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_RETENTION_S": "2", "RETENTION_TICK_S": "0.5"})
    await worker.wait_ready(timeout=30)
    (partner,) = await publish_partners(participants, 1)
    saga_id = ids.saga_id_for_partner(partner)
    await taps["lifecycle"].wait_for(lambda t: ended(t).get(saga_id) == ["SagaCompleted"], 30, "the saga")
    await _retained(worker, saga_id)

    # integraciones announces the partner again, under a new event id.
    again = partner_created(partner, 0, event_id=str(uuid.uuid4()))
    await participants.publish(participants.partner_events, again)
    # The letter shows it with the partner's personal data masked (agents/dead_letters.py).
    shown = redacted_message(again)
    await taps["dead"].wait_for(lambda t: any(m.data == shown for m in t.messages), 30, "its dead letter")
    (dead,) = [m for m in taps["dead"].messages if m.data == shown]
    assert "duplicate of a finished saga" in dead.properties["reason"], dead.properties
    await asyncio.sleep(2)  # a second saga would have sent its CreateAlliance by now
    # Before: the retained saga was opened again under its own id: a second CreateAlliance,
    # with the same command ids, and two starts in one history.
    creates = [c for c in taps["alianzas"].events() if c["type"] == "CreateAlliance"]
    assert len(creates) == 1
    status, history = await worker.get(f"/api/v1/sagas/{saga_id}/history")
    assert status == 200
    assert [t["to_status"] for t in history["transitions"]].count("started") == 1
    status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert body["status"] == "completed" and body["source"] == "snapshot"
    _, metrics = await worker.get("/metrics")
    assert 'saga_events_at_tombstone_total{type="PartnerCreated",verdict="duplicate"} 1' in metrics
