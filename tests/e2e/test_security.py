"""The HTTP API closed to strangers (issue #21), on real workers: every /api route and the
dashboard refuse a caller without a token or with a wrong one (401), or with a token lacking
the route's role (403), and no refusal says anything about a saga; Faust's own /table and
/router views are not served; a read-only token sees the partner's personal data masked and
cannot start, retry, cancel or erase; a start token starts but cannot read; the operator token does
everything and sees the partner in clear; /health, /ready and /metrics stay open and carry no
personal data; a status request forwarded to the owner of the saga's partition is answered
for the caller's token; no token configured: closed (401 with a hint), API_AUTH=open: open,
with a WARNING line; a token from a file works; a short token stops the start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.flows import ended
from tests.support.worker import OPERATOR_TOKEN, ROOT, Worker

pytestmark = pytest.mark.stack

READ_TOKEN = "e2e-reader-token-0123456789"
START_TOKEN = "e2e-starter-token-0123456789"
WRONG_TOKEN = "e2e-wrong-token-0123456789"
ROLES = {"API_READ_TOKENS": READ_TOKEN, "API_START_TOKENS": START_TOKEN}
PARTNER = {"nombre": "Ana Secreta", "email": "ana.secreta@example.com", "telefono": "+57 300 7654321",
           "direccion": "Calle Secreta 7"}


def reads(saga_id: str) -> list[str]:
    return [f"/api/v1/saga/status/{saga_id}", "/api/v1/saga/active", "/api/v1/sagas",
            f"/api/v1/sagas?q={saga_id}", "/api/v1/sagas/attention", "/api/v1/sagas/counts",
            f"/api/v1/sagas/{saga_id}/history"]


def writes(saga_id: str) -> list[tuple[str, Any]]:
    return [("/api/v1/saga/partner-creation", {**PARTNER, "correlation_id": str(uuid.uuid4())}),
            (f"/api/v1/sagas/{saga_id}/retry", {}), (f"/api/v1/sagas/{saga_id}/cancel", {"reason": "x"}),
            (f"/api/v1/sagas/{saga_id}/erase", {}), (f"/api/v1/partners/{saga_id}/erase", {})]


def personal(body: Any) -> list[str]:
    """The partner's personal values found in an answer (none, for a masked one)."""
    text = body if isinstance(body, str) else repr(body)
    return [v for v in PARTNER.values() if v in text]


async def _a_finished_saga(worker: Worker, taps: Any) -> str:
    """A saga started over HTTP with PARTNER's data, ended, and its end in the snapshots."""
    status, body = await worker.post("/api/v1/saga/partner-creation",
                                     {**PARTNER, "correlation_id": str(uuid.uuid4())})
    assert status == 202, body
    saga_id = str(body["saga_id"])
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
    # The snapshots follow the changelog a moment later: wait for the saga's end to be there
    # (the API's 409 for a retry of an ended saga reads it).
    for _ in range(100):
        status, body = await worker.get(f"/api/v1/sagas/{saga_id}/history")
        if status == 200 and any(t["to_status"] in ("completed", "compensated", "failed")
                                 for t in body["transitions"]):
            return saga_id
        await asyncio.sleep(0.2)
    raise AssertionError(f"saga {saga_id}'s end not in the snapshots")


async def _raw_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.get(url, headers=headers or {}) as r:
            return r.status, r.content_type, await r.text()


async def test_strangers_get_401_everywhere_and_learn_nothing(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=ROLES)
    await worker.wait_ready(timeout=60)
    saga_id = await _a_finished_saga(worker, taps)
    for token in (None, WRONG_TOKEN, "short", READ_TOKEN[:-1]):
        for path in [*reads(saga_id), "/dashboard"]:
            status, body = await worker.get(path, token=token)
            assert status == 401, (token, path, body)
            assert isinstance(body, dict) and set(body) <= {"error", "hint"} and saga_id not in repr(body)
            assert not personal(body)
        for path, payload in writes(saga_id):
            status, body = await worker.post(path, payload, token=token)
            assert status == 401 and set(body) <= {"error", "hint"} and not personal(body), (path, body)
    # Not a bearer token at all.
    status, body = await worker.get(f"/api/v1/saga/status/{saga_id}", token=None,
                                    headers={"Authorization": f"Basic {OPERATOR_TOKEN}"})
    assert status == 401 and "bearer" in body["error"]
    # A browser: the dashboard's page (code, no data) with the 401; the page then asks for a token.
    status, ctype, html = await _raw_get(f"{worker.url}/dashboard", {"Accept": "text/html"})
    assert status == 401 and ctype == "text/html" and 'id="saga-page"' in html and not personal(html)
    # Faust's own views: not served (any table's data, every worker's address).
    for path in (f"/table/sagas/{saga_id}", "/table/sagas/", "/table/", "/router/", "/router/sagas/",
                 f"/router/sagas/{saga_id}/"):
        for token in (None, WRONG_TOKEN, READ_TOKEN):
            status, body = await worker.get(path, token=token)
            assert status in (401, 403, 404), (path, body)
            assert not personal(body) and saga_id not in repr(body), (path, body)
        status, _ = await worker.get(path)  # the operator: there is nothing there
        assert status == 404, path


async def test_a_read_token_sees_masked_data_and_can_change_nothing(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=ROLES)
    await worker.wait_ready(timeout=60)
    saga_id = await _a_finished_saga(worker, taps)
    for path in reads(saga_id):
        status, body = await worker.get(path, token=READ_TOKEN)
        assert status == 200 and not personal(body), (path, body)
    _, state = await worker.get(f"/api/v1/saga/status/{saga_id}", token=READ_TOKEN)
    assert state["saga_id"] == saga_id and state["partner"] == {
        "nombre": "***", "email": "a***@example.com", "telefono": "***", "direccion": "***"}
    status, ctype, html = await _raw_get(f"{worker.url}/dashboard", {"Authorization": f"Bearer {READ_TOKEN}"})
    assert status == 200 and ctype == "text/html" and 'id="saga-page"' in html
    for path, payload in writes(saga_id):
        status, body = await worker.post(path, payload, token=READ_TOKEN)
        assert status == 403 and body["required_role"] in ("start", "operate"), (path, body)
        assert not personal(body) and saga_id not in repr(body)


async def test_a_start_token_starts_but_cannot_read(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=ROLES)
    await worker.wait_ready(timeout=60)
    status, body = await worker.post("/api/v1/saga/partner-creation",
                                     {**PARTNER, "correlation_id": str(uuid.uuid4())}, token=START_TOKEN)
    assert status == 202 and not personal(body), body
    saga_id = body["saga_id"]
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
    for path in [*reads(saga_id), "/dashboard"]:
        status, body = await worker.get(path, token=START_TOKEN)
        assert status == 403 and body["required_role"] == "read" and not personal(body), (path, body)
    for path, payload in writes(saga_id)[1:]:
        status, body = await worker.post(path, payload, token=START_TOKEN)
        assert status == 403 and body["required_role"] == "operate", (path, body)


async def test_the_operator_does_everything_and_sees_the_partner_in_clear(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=ROLES)
    await worker.wait_ready(timeout=60)
    saga_id = await _a_finished_saga(worker, taps)
    for path in reads(saga_id):
        status, body = await worker.get(path)
        assert status == 200, (path, body)
    _, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert state["partner"] == PARTNER
    # Past the door: the saga has ended, so retry and cancel are refused by the saga's rules
    # (its erasure: tests/e2e/test_erasure.py).
    for path, payload in writes(saga_id)[1:3]:
        status, body = await worker.post(path, payload)
        assert status == 409 and body["saga_status"] in ("completed", "compensated", "failed"), body


async def test_the_probes_stay_open_and_carry_no_personal_data(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=ROLES)
    await worker.wait_ready(timeout=60)
    await _a_finished_saga(worker, taps)
    for path in ("/health", "/ready", "/metrics"):
        status, body = await worker.get(path, token=None)
        assert status == 200 and not personal(body), (path, body)


async def test_a_status_request_forwarded_to_the_owner_is_answered_for_the_callers_token(  # type: ignore[no-untyped-def]
        spawn, participants, taps) -> None:
    a, b = spawn("a", env=ROLES), spawn("b", env=ROLES)
    await asyncio.gather(a.wait_ready(timeout=90), b.wait_ready(timeout=90))
    started = []
    for _ in range(12):  # over 8 partitions and 2 workers: each owns some, the other forwards
        status, body = await a.post("/api/v1/saga/partner-creation",
                                    {**PARTNER, "correlation_id": str(uuid.uuid4())})
        assert status == 202, body
        started.append(body["saga_id"])
    await taps["lifecycle"].wait_for(lambda t: set(started) <= set(ended(t)), 60, "12 sagas to end")
    for worker in (a, b):
        for saga_id in started:
            status, body = await worker.get(f"/api/v1/saga/status/{saga_id}", token=READ_TOKEN)
            assert status == 200 and body["source"] == "live" and body["saga_id"] == saga_id, body
            assert body["partner"]["nombre"] == "***" and not personal(body)
            status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
            assert status == 200 and body["partner"] == PARTNER
            status, body = await worker.get(f"/api/v1/saga/status/{saga_id}", token=WRONG_TOKEN)
            assert status == 401 and not personal(body)


async def test_no_token_configured_is_closed_and_open_is_said(spawn, participants) -> None:  # type: ignore[no-untyped-def]
    closed = spawn("closed", env={"OPERATOR_TOKEN": ""})
    opened = spawn("open", env={"OPERATOR_TOKEN": "", "API_AUTH": "open"})
    await asyncio.gather(closed.wait_ready(timeout=90), opened.wait_ready(timeout=90))
    status, body = await closed.get("/api/v1/sagas/counts", token=None)
    assert status == 401 and "OPERATOR_TOKEN or API_*_TOKENS" in body["hint"]
    status, body = await closed.get("/api/v1/sagas/counts", token=OPERATOR_TOKEN)
    assert status == 401 and "no API token is configured" in body["error"]
    assert (await closed.get("/health", token=None))[0] == 200
    assert "no API token is configured" in closed.log()
    status, body = await opened.get("/api/v1/sagas/counts", token=None)
    assert status == 200 and "counts" in body
    warned = [line for line in opened.log().splitlines() if "API_AUTH=open" in line]
    assert len(warned) == 1, opened.log()[-3000:]


async def test_tokens_from_files(spawn, participants, taps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "operator").write_text("operator-from-a-file-0123456789\n")
    (tmp_path / "readers").write_text("# rotation: old, then new\nold-reader-0123456789\n"
                                      "new-reader-0123456789\n")
    worker = spawn(env={"OPERATOR_TOKEN": "", "OPERATOR_TOKEN_FILE": str(tmp_path / "operator"),
                        "API_READ_TOKENS_FILE": str(tmp_path / "readers")})
    await worker.wait_ready(timeout=60)
    saga_id = await _a_finished_saga_with(worker, taps, "operator-from-a-file-0123456789")
    for token in ("old-reader-0123456789", "new-reader-0123456789"):
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}", token=token)
        assert status == 200 and body["partner"]["nombre"] == "***"
    status, _ = await worker.get(f"/api/v1/saga/status/{saga_id}", token=OPERATOR_TOKEN)
    assert status == 401  # the variable was emptied: only the file's operator token counts


async def _a_finished_saga_with(worker: Worker, taps: Any, token: str) -> str:
    status, body = await worker.post("/api/v1/saga/partner-creation",
                                     {**PARTNER, "correlation_id": str(uuid.uuid4())}, token=token)
    assert status == 202, body
    await taps["lifecycle"].wait_for(lambda t: body["saga_id"] in ended(t), 30, "the saga to end")
    return str(body["saga_id"])


@pytest.mark.parametrize(("var", "value"), [("OPERATOR_TOKEN", "too-short"),
                                            ("API_READ_TOKENS", "long-enough-0123456789,short")])
def test_a_short_token_stops_the_worker_with_one_line(stack: None, var: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "OPERATOR_TOKEN"))}
    run = subprocess.run([sys.executable, "-m", "orchestrator", "worker", "--web-port", "0"], cwd=ROOT,
                         env={**env, var: value}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and var in lines[0] and "16 characters" in lines[0], run.stderr
    assert "too-short" not in run.stderr and ",short" not in run.stderr
