"""The right to erasure (issue #21) on a real worker: an operator erases the partner's personal
data from a finished saga (API and CLI, by saga or by partner); the live state, the PostgreSQL
snapshot and the history keep the ids and statuses and lose the data, the history records the
erasure, a lifecycle notice says so; erasing again changes nothing; a running saga refuses
(409), an unknown one is 404; no answer carries the data."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from simulators.participants import Behaviour
from tests.support.flows import ended
from tests.support.stack import PG_URL
from tests.support.worker import OPERATOR_TOKEN, ROOT, Worker

pytestmark = pytest.mark.stack

# A running saga stays running: its alliance's reply deadline is far away.
SLOW = {"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "600"}


def a_partner() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"nombre": f"Erasable {tag}", "email": f"erase.{tag}@example.com", "telefono": f"+57 {tag}",
            "direccion": f"Calle {tag}"}


def carries(body: Any, partner: dict[str, str]) -> list[str]:
    text = body if isinstance(body, str) else json.dumps(body)
    return [v for v in partner.values() if v in text]


async def _start(worker: Worker, partner: dict[str, str]) -> str:
    status, body = await worker.post("/api/v1/saga/partner-creation",
                                     {**partner, "correlation_id": str(uuid.uuid4())})
    assert status == 202, body
    return str(body["saga_id"])


async def _snapshot(worker: Worker, saga_id: str, until: Any, what: str) -> dict[str, Any]:
    """The saga's PostgreSQL row (state and history rows) once `until(row)` holds."""
    schema = worker.names.app_id
    row: dict[str, Any] | None = None
    for _ in range(150):
        async with await psycopg.AsyncConnection.connect(PG_URL, row_factory=dict_row) as conn:
            cur = await conn.execute(
                f'SELECT s.state, s.status, s.reason, (SELECT coalesce(json_agg(t ORDER BY t.version, t.seq),'
                f" '[]') FROM \"{schema}\".saga_transitions t WHERE t.saga_id = s.saga_id) AS history"
                f' FROM "{schema}".saga_snapshots s WHERE s.saga_id = %s', (saga_id,))
            row = await cur.fetchone()
        if row is not None and until(row):
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"saga {saga_id}: {what}; last row {row}")


def _cli(worker: Worker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAGA_TOKEN": OPERATOR_TOKEN}
    return subprocess.run([sys.executable, "-m", "orchestrator", "sagas", *args, "--url", worker.url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("behaviour", [Behaviour()], ids=["participants"])
async def test_an_operator_erases_a_finished_sagas_partner(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=SLOW)
    await worker.wait_ready(timeout=60)
    partner = a_partner()
    saga_id = await _start(worker, partner)
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
    before = await _snapshot(worker, saga_id, lambda r: r["status"] == "completed", "completed in PostgreSQL")
    assert carries(before["state"], partner) and before["history"]
    partner_id = before["state"]["partner_id"]

    status, body = await worker.post(f"/api/v1/sagas/{saga_id}/erase")
    assert status == 202 and body["outcome"] == "accepted" and not carries(body, partner), body

    after = await _snapshot(worker, saga_id, lambda r: r["state"].get("erased_at") is not None,
                            "erased in PostgreSQL")
    assert not carries(after, partner), after
    assert after["status"] == "completed" and after["state"]["partner_id"] == partner_id
    assert after["state"]["partner"]["email"] == "[erased]"
    # The history keeps every status change and records the erasure, without the data.
    changes = [(t["from_status"], t["to_status"], t["event_type"]) for t in after["history"]]
    assert changes[:len(before["history"])] == [(t["from_status"], t["to_status"], t["event_type"])
                                               for t in before["history"]]
    assert changes[-1] == ("completed", "completed", "ErasureRequested")
    # The live state, through the API, for the operator who sees everything.
    status, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert status == 200 and state["status"] == "completed" and state["erased_at"] is not None
    assert not carries(state, partner), state
    status, history = await worker.get(f"/api/v1/sagas/{saga_id}/history")
    assert status == 200 and history["transitions"][-1]["event_type"] == "ErasureRequested"
    def erased(t: Any) -> list[dict[str, Any]]:
        return [e for e in t.events() if e["type"] == "PersonalDataErased" and e["sagaid"] == saga_id]

    await taps["lifecycle"].wait_for(erased, 30, "the erasure's lifecycle notice")
    assert not carries(erased(taps["lifecycle"]), partner)

    # Again: nothing more to erase, by saga, by partner, from the CLI.
    status, body = await worker.post(f"/api/v1/sagas/{saga_id}/erase")
    assert status == 200 and body["outcome"] == "already_erased", body
    status, body = await worker.post(f"/api/v1/partners/{partner_id}/erase")
    assert status == 200 and [s["outcome"] for s in body["sagas"]] == ["already_erased"], body
    done = _cli(worker, "erase", saga_id)
    assert done.returncode == 0 and "already_erased" in done.stdout, done
    # Unknown saga, unknown partner.
    status, body = await worker.post(f"/api/v1/sagas/{uuid.uuid4()}/erase")
    assert status == 404 and "error" in body
    status, body = await worker.post(f"/api/v1/partners/{uuid.uuid4()}/erase")
    assert status == 404 and "error" in body

    # A saga still running refuses, and keeps its data: its steps may still need it.
    behaviour.no_reply_alliance = 1.0
    running = a_partner()
    live_id = await _start(worker, running)
    live = await _snapshot(worker, live_id, lambda r: r["status"] == "alliance_creation_in_progress",
                           "waiting for its alliance")
    status, body = await worker.post(f"/api/v1/sagas/{live_id}/erase")
    assert status == 409 and "still running" in body["error"] and not carries(body, running), body
    status, body = await worker.post(f"/api/v1/partners/{live['state']['partner_id']}/erase")
    assert status == 409 and [s["outcome"] for s in body["sagas"]] == ["refused"], body
    refused = _cli(worker, "erase", "--partner-id", live["state"]["partner_id"])
    assert refused.returncode == 1 and "409" in refused.stderr, refused
    status, state = await worker.get(f"/api/v1/saga/status/{live_id}")
    assert state["partner"] == running and state.get("erased_at") is None
