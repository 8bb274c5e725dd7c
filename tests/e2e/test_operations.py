"""Operating sagas over HTTP: lists and history from the snapshots, operator retry and
cancel (bearer token), readiness and metrics; bad requests get a 4xx with a JSON body."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from simulators.participants import Behaviour
from tests.support.flows import ended, publish_partners
from tests.support.worker import OPERATOR_TOKEN

pytestmark = pytest.mark.stack

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def _snapshotted(worker, saga_ids: set[str], status: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        _, page = await worker.get(f"/api/v1/sagas?status={status}&limit=500")
        if saga_ids <= {s["saga_id"] for s in page["sagas"]}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"sagas not snapshotted as {status}")


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.3)], ids=["some-compensate"])
async def test_lists_pages_filters_and_history(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 40)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 40, 60, "40 sagas to end")
    finals = ended(taps["lifecycle"])
    completed = {s for s, t in finals.items() if t == ["SagaCompleted"]}
    compensated = set(finals) - completed
    await _snapshotted(worker, completed, "completed")
    await _snapshotted(worker, compensated, "compensated")

    # Walking the pages gives every saga once, newest first.
    seen: list[str] = []
    cursor = ""
    while True:
        status, page = await worker.get(f"/api/v1/sagas?limit=7{'&cursor=' + cursor if cursor else ''}")
        assert status == 200 and len(page["sagas"]) <= 7
        seen += [s["saga_id"] for s in page["sagas"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(finals) and len(seen) == len(set(seen))
    _, both = await worker.get("/api/v1/sagas?status=completed,compensated&limit=500")
    assert {s["saga_id"] for s in both["sagas"]} == set(finals)
    _, counts = await worker.get("/api/v1/sagas/counts")
    assert counts["counts"] == {k: v for k, v in (("completed", len(completed)),
                                                  ("compensated", len(compensated))) if v}
    _, active = await worker.get("/api/v1/saga/active")
    assert active == {"sagas": [], "next_cursor": None}
    one = next(iter(compensated))
    _, state = await worker.get(f"/api/v1/saga/status/{one}")
    _, by_partner = await worker.get(f"/api/v1/sagas?partner_id={state['partner_id']}")
    assert [s["saga_id"] for s in by_partner["sagas"]] == [one]
    status, history = await worker.get(f"/api/v1/sagas/{one}/history")
    assert status == 200
    path = [t["to_status"] for t in history["transitions"]]
    assert path == ["started", "partner_creation_in_progress", "partner_created",
                    "alliance_creation_in_progress", "compensating", "compensated"]
    versions = [t["version"] for t in history["transitions"]]
    assert versions == sorted(versions)


@pytest.mark.parametrize(("path", "status", "word"), [
    ("/api/v1/sagas?status=nope", 400, "unknown status"),
    ("/api/v1/sagas?limit=0", 400, "limit"),
    ("/api/v1/sagas?limit=ten", 400, "limit"),
    ("/api/v1/sagas?cursor=%%%", 400, "cursor"),
    (f"/api/v1/sagas/{uuid.uuid4()}/history", 404, "no such saga"),
    (f"/api/v1/saga/status/{uuid.uuid4()}", 404, "no such saga"),
])
async def test_bad_queries_get_a_4xx_json_error(spawn, path: str, status: int, word: str) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    got, body = await worker.get(path)
    assert got == status and word in body["error"], body


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=1.0, fail_revert=1.0)], ids=["undo-fails"])
async def test_operator_retry_of_a_saga_that_needs_attention(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_UNDO_MAX_ATTEMPTS": "2", "SAGA_BACKOFF_S": "0.2"})
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 1)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 1, 30, "the saga to give up")
    saga_id = next(iter(ended(taps["lifecycle"])))
    await _snapshotted(worker, {saga_id}, "compensation_failed")

    for token in (None, "wrong-token-000000000"):
        status, body = await worker.post(f"/api/v1/sagas/{saga_id}/retry", token=token)
        assert status == 401 and "token" in body["error"]
    status, body = await worker.post(f"/api/v1/sagas/{uuid.uuid4()}/retry", headers=AUTH)
    assert status == 404
    status, body = await worker.post(f"/api/v1/sagas/{saga_id}/explode", headers=AUTH)
    assert status == 404

    participants.behaviour.fail_revert = 0.0  # someone fixed integraciones
    status, body = await worker.post(f"/api/v1/sagas/{saga_id}/retry", headers=AUTH)
    assert status == 202 and body["status_before"] == "compensation_failed"
    await taps["lifecycle"].wait_for(lambda t: "SagaCompensated" in ended(t).get(saga_id, []), 30,
                                     "the retried compensation")
    _, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert state["status"] == "compensated"
    # The retry round sent RevertPartner under ids the participant had not seen before.
    reverts = [c["id"] for c in taps["integraciones"].events() if c["type"] == "RevertPartner"]
    assert len(reverts) == len(set(reverts)) == 3


@pytest.mark.parametrize("behaviour", [Behaviour(no_reply_alliance=1.0)], ids=["alianzas-silent"])
async def test_operator_cancel_of_a_stuck_saga(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "600"})
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 1)
    await taps["alianzas"].wait_for(lambda t: len(t.messages) == 1, 30, "CreateAlliance")
    saga_id = taps["alianzas"].events()[0]["sagaid"]
    await _snapshotted(worker, {saga_id}, "alliance_creation_in_progress")
    _, active = await worker.get("/api/v1/saga/active")
    assert [s["saga_id"] for s in active["sagas"]] == [saga_id]
    status, _ = await worker.post(f"/api/v1/sagas/{saga_id}/cancel", {"reason": "stuck"}, headers=AUTH)
    assert status == 202
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the cancelled saga to end")
    assert ended(taps["lifecycle"])[saga_id] == ["SagaCompensated"]
    _, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert state["status"] == "compensated" and state["reason"] == "stuck"


async def test_ready_and_metrics(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    status, ready = await worker.get("/ready")
    assert status == 200 and ready["ready"] is True
    assert set(ready["checks"]) == {"kafka", "pulsar", "postgres"}
    assert ready["checks"]["pulsar"]["missing"] == []
    await publish_partners(participants, 5)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 5, 30, "5 sagas")
    await participants.publish(participants.partner_events, b"garbage")
    await taps["dead"].wait_for(lambda t: len(t.messages) == 1, 30, "a dead letter")
    expected = ('saga_events_total{outcome="applied",type="PartnerCreated"} 5',
                'saga_transitions_total{to="completed"} 5', 'saga_commands_total{type="CreateAlliance"} 5',
                'saga_commands_sent_total{type="CreateAlliance"} 5', "saga_outbound_events_waiting",
                "saga_batches_total", "saga_batch_events_total", "saga_outbox_records_forwarded_total",
                "saga_dead_letters_total", "saga_step_latency_seconds_bucket", "saga_snapshot_lag_records")
    # The bridges' process (the outbox's sends, the inbound dead letter) reports its counters
    # twice a second: wait for the report that has them all.
    for _ in range(100):
        _, metrics = await worker.get("/metrics")
        if all(line in metrics for line in expected):
            break
        await asyncio.sleep(0.2)
    for line in expected:
        assert line in metrics, line
