"""The worker's own views behind the middleware (no Kafka, no PostgreSQL: the saga table and
the snapshot store are stand-ins): every /api route and /dashboard closed to strangers; a
reader sees the partner's personal data masked in the status (live, snapshot, tombstone), the
lists and the history; an operator sees it in clear; a start token starts but cannot read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.exceptions import SameNode

from common.version import commit, version
from domain import Definitions, alpes_partner, partner_creation
from orchestrator import auth, web_ops
from orchestrator import web as views
from orchestrator.auth import OPERATE, READ, START, Authority
from runtime.app import app
from runtime.metrics import METRICS
from tests.support.definitions import partner_creation_v2

READER, STARTER, OPERATOR = "reader-token-0123456789", "starter-token-0123456789", "operator-token-0123456789"
PARTNER = {"nombre": "Ana Pérez", "email": "ana.perez@example.com", "telefono": "+57 300 1234567",
           "direccion": "Calle 1 # 2-3"}


def _state(saga_id: str) -> dict[str, Any]:
    return {"saga_id": saga_id, "status": "compensation_failed", "origin": "http", "correlation_id": "c-1",
            "partner": dict(PARTNER), "reason": "no partner with email ana.perez@example.com", "version": 3,
            "created_at": 1.0, "updated_at": 2.0,
            "applied": [{"event_id": "e-1", "commands": [{"command_id": "k-1", "type": "CreatePartner",
                                                          "saga_id": saga_id, "correlation_id": "c-1",
                                                          "destination": "integraciones", "attempt": 1,
                                                          "data": dict(PARTNER)}]}]}


class Store:
    """The snapshot store's reads, with a partner's personal data in them."""

    async def get(self, saga_id: str) -> dict[str, Any] | None:
        return _state(saga_id) if saga_id == "snap" else None

    async def list(self, **_: Any) -> tuple[list[dict[str, Any]], None]:
        return [{"saga_id": "s-1", "status": "failed", "partner_id": "p-1",
                 "reason": "HTTP 409, and no partner with email ana.perez@example.com"}], None

    async def attention(self, **_: Any) -> list[dict[str, Any]]:
        return (await self.list())[0]

    async def counts(self) -> dict[str, int]:
        return {"failed": 1}

    async def definitions(self) -> list[dict[str, Any]]:
        # Version 1 of partner-creation still has a saga; an old "legacy" flow none deployed.
        return [{"flow": "legacy", "version": 3, "sagas_left": 2},
                {"flow": "partner-creation", "version": 1, "sagas_left": 1}]

    async def history(self, saga_id: str) -> list[dict[str, Any]]:
        return [{"version": 1, "seq": 0, "from_status": None, "to_status": "started",
                 "event_type": "StartSaga", "event_id": "e-1", "at": "2026-01-01T00:00:00+00:00"}]


class Table:
    name = "sagas"

    def get(self, saga_id: str) -> bytes | None:
        if saga_id == "live":
            return json.dumps(_state("live")).encode()
        if saga_id == "tomb":
            return json.dumps({"tombstone": True, "saga_id": "tomb", "status": "completed", "version": 4,
                               "flow": "partner-creation", "origin": "http", "correlation_id": "c-2",
                               "business_key": "c-2", "created_at": 1.0, "ended_at": 2.0, "retained_at": 3.0},
                              separators=(",", ":")).encode()
        return None


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def same_node(*_: Any) -> None:
        raise SameNode()

    monkeypatch.setattr(views, "STORE", Store())
    monkeypatch.setattr(web_ops, "STORE", Store())
    monkeypatch.setattr(views, "sagas", Table())
    monkeypatch.setattr(app.router, "route_req", same_node)
    # The worker's own routes and views, behind a middleware with the test's tokens.
    front = web.Application(middlewares=[auth.middleware(Authority(
        {READER: [READ], STARTER: [START], OPERATOR: [READ, START, OPERATE]}))])
    for route in app.web.web_app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            front.router.add_route(route.method, route.resource.canonical, route.handler)
    async with TestClient(TestServer(front)) as c:
        yield c


READS = ["/api/v1/saga/status/live", "/api/v1/saga/status/snap", "/api/v1/saga/status/tomb",
         "/api/v1/sagas", "/api/v1/saga/active", "/api/v1/sagas/attention", "/api/v1/sagas/counts",
         "/api/v1/sagas/definitions", "/api/v1/sagas/s-1/history", "/dashboard"]
POSTS = ["/api/v1/saga/partner-creation", "/api/v1/sagas/s-1/retry", "/api/v1/sagas/s-1/cancel"]


def _has_personal_data(text: str) -> bool:
    return any(v in text for v in PARTNER.values())


async def test_strangers_are_refused_everywhere_and_told_nothing(client: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        for method, path in [("GET", p) for p in READS] + [("POST", p) for p in POSTS]:
            r = await client.request(method, path, headers=headers, json={"nombre": "x", "email": "x@y"})
            text = await r.text()
            assert r.status == 401, (method, path, text)
            assert not _has_personal_data(text) and set(json.loads(text)) <= {"error", "hint"}


async def test_a_reader_sees_masked_personal_data_everywhere(client: TestClient[Any, Any]) -> None:
    for path in READS[:-1]:
        r = await client.get(path, headers={"Authorization": f"Bearer {READER}"})
        text = await r.text()
        assert r.status == 200, (path, text)
        assert not _has_personal_data(text), (path, text)
    r = await client.get("/api/v1/saga/status/live", headers={"Authorization": f"Bearer {READER}"})
    body = await r.json()
    assert body["source"] == "live" and body["partner"]["email"] == "a***@example.com"
    assert body["commands"] == [{"event_id": "e-1", "command_id": "k-1", "type": "CreatePartner",
                                 "destination": "integraciones", "attempt": 1}]
    r = await client.get("/api/v1/saga/status/snap", headers={"Authorization": f"Bearer {READER}"})
    assert (await r.json())["source"] == "snapshot"
    r = await client.get("/api/v1/saga/status/tomb", headers={"Authorization": f"Bearer {READER}"})
    assert (await r.json())["source"] == "tombstone"
    for path in POSTS:
        r = await client.post(path, headers={"Authorization": f"Bearer {READER}"}, json={})
        assert r.status == 403 and not _has_personal_data(await r.text())


async def test_an_operator_sees_it_in_clear(client: TestClient[Any, Any]) -> None:
    for path, field in (("/api/v1/saga/status/live", "partner"), ("/api/v1/saga/status/snap", "partner")):
        r = await client.get(path, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert (await r.json())[field] == PARTNER
    r = await client.get("/api/v1/sagas", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert "ana.perez@example.com" in (await r.json())["sagas"][0]["reason"]


async def test_a_start_token_cannot_read(client: TestClient[Any, Any]) -> None:
    for path in READS:
        r = await client.get(path, headers={"Authorization": f"Bearer {STARTER}"})
        assert r.status == 403, path
    for path in POSTS[1:]:
        r = await client.post(path, headers={"Authorization": f"Bearer {STARTER}"}, json={})
        assert r.status == 403, path
    # Past the door, the start view itself answers (here: a body it refuses, before Kafka).
    r = await client.post(POSTS[0], headers={"Authorization": f"Bearer {STARTER}"}, json={"nombre": ""})
    assert r.status == 422


async def test_probes_stay_open(client: TestClient[Any, Any]) -> None:
    r = await client.get("/health")
    assert r.status == 200 and await r.json() == {"status": "ok", "service": "saga-orchestrator",
                                                  "version": version(), "commit": commit()}
    r = await client.get("/metrics")
    assert r.status == 200 and f'saga_build_info{{commit="{commit()}",faust=' in await r.text()


async def test_the_definition_versions_and_what_is_left_of_each(client: TestClient[Any, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_ops, "DEFINITIONS", Definitions([partner_creation(), partner_creation_v2(),
                                                             alpes_partner()]))
    r = await client.get("/api/v1/sagas/definitions", headers={"Authorization": f"Bearer {READER}"})
    assert r.status == 200
    by = {(d["flow"], d["version"]): d for d in (await r.json())["definitions"]}
    assert by[("partner-creation", 1)] == {"flow": "partner-creation", "version": 1, "deployed": True,
                                           "newest": False, "sagas_left": 1, "removable": False}
    assert by[("partner-creation", 2)]["newest"] and not by[("partner-creation", 2)]["removable"]
    assert by[("alpes-partner", 1)] == {"flow": "alpes-partner", "version": 1, "deployed": True,
                                        "newest": True, "sagas_left": 0, "removable": False}
    # Sagas of a version no worker here runs: shown, so that nobody removes what they need.
    assert by[("legacy", 3)]["deployed"] is False and by[("legacy", 3)]["sagas_left"] == 2
    # The gauge the worker refreshes every 30 s, from the same report.
    await web_ops.refresh_definition_counts()
    text = METRICS.render()
    assert 'saga_definition_sagas_left{flow="partner-creation",version="1"} 1.0' in text
    assert 'saga_definition_sagas_left{flow="alpes-partner",version="1"} 0.0' in text
    # Once the last saga of version 1 ended, it may go.
    async def none_left() -> list[dict[str, Any]]:
        return []
    monkeypatch.setattr(web_ops.STORE, "definitions", none_left)
    r = await client.get("/api/v1/sagas/definitions", headers={"Authorization": f"Bearer {READER}"})
    assert {(d["flow"], d["version"]) for d in (await r.json())["definitions"] if d["removable"]} == \
        {("partner-creation", 1)}
