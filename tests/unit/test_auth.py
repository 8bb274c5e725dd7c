"""The HTTP API's door (orchestrator/auth.py): bearer tokens and their roles, checked by one
aiohttp middleware for every route; refusals that say nothing about a saga; personal data
masked for a reader without `operate`; a status request forwarded to its partition's owner
(Faust's own Router._route_req) checked there with the caller's token."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from faust.app.router import Router
from yarl import URL

from orchestrator import auth
from orchestrator.auth import OPERATE, READ, START, Authority, Principal, Refusal, RoutePolicy

READER = "reader-token-0123456789"
STARTER = "starter-token-0123456789"
OPERATOR = "operator-token-0123456789"
OPERATES = "operates-only-0123456789"
TOKENS = {READER: [READ], STARTER: [START], OPERATOR: [READ, START, OPERATE], OPERATES: [OPERATE]}

PARTNER = {"nombre": "Ana Pérez", "email": "ana.perez@example.com", "telefono": "+57 300 1234567",
           "direccion": "Calle 1 # 2-3"}
STATE = {"saga_id": "s-1", "status": "failed", "partner": PARTNER,
         "reason": "HTTP 409 EMAIL_EXISTENTE, and no partner with email ana.perez@example.com"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- who a header names --------------------------------------------------------------------
def test_each_token_has_its_roles_and_operate_implies_read() -> None:
    a = Authority(TOKENS)
    assert a.identify(f"Bearer {READER}") == Principal(frozenset({READ}))
    assert a.identify(f"bearer {STARTER}") == Principal(frozenset({START}))  # the scheme's case is free
    assert a.identify(f"Bearer {OPERATES}") == Principal(frozenset({OPERATE, READ}))
    assert a.identify(f"Bearer  {OPERATOR} ") == Principal(frozenset({READ, START, OPERATE}))
    assert not Principal.of([READ]).sees_personal_data
    assert Principal.of([OPERATE]).sees_personal_data


def test_a_token_given_under_two_roles_has_both() -> None:
    a = Authority({READER: [READ, START]})
    assert a.identify(f"Bearer {READER}") == Principal(frozenset({READ, START}))


@pytest.mark.parametrize(("header", "error", "code"), [
    (None, "missing bearer token", None),
    ("", "missing bearer token", None),
    (f"Basic {READER}", "not a bearer token", "invalid_request"),
    ("Bearer", "not a bearer token", "invalid_request"),
    ("Bearer wrong-token-0123456789", "invalid bearer token", "invalid_token"),
    (f"Bearer {READER}x", "invalid bearer token", "invalid_token"),
    (f"Bearer {READER[:-1]}", "invalid bearer token", "invalid_token"),
    ("Bearer ünïcode-tökén-0123456789", "invalid bearer token", "invalid_token"),
])
def test_no_token_or_a_wrong_one_is_refused_401(header: str | None, error: str, code: str | None) -> None:
    refusal = Authority(TOKENS).identify(header)
    assert isinstance(refusal, Refusal) and refusal.status == 401
    assert error in refusal.error and refusal.code == code


def test_with_no_token_configured_everything_is_refused_with_a_hint() -> None:
    refusal = Authority({}).identify(f"Bearer {OPERATOR}")
    assert isinstance(refusal, Refusal) and refusal.status == 401
    assert "no API token is configured" in refusal.error
    assert "OPERATOR_TOKEN or API_*_TOKENS" in refusal.extra["hint"]


def test_open_mode_lets_anyone_in_and_says_so_at_start_up() -> None:
    a = Authority({}, open_=True)
    assert a.identify(None) == Principal(frozenset({READ, START, OPERATE}))
    (line,) = a.warnings()
    assert "API_AUTH=open" in line and "\n" not in line
    (closed,) = Authority({}).warnings()
    assert "401" in closed and "OPERATOR_TOKEN" in closed
    assert Authority(TOKENS).warnings() == []


def test_every_configured_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    a = Authority(TOKENS)
    for given in (READER, OPERATES, "wrong-token-0123456789", "short", "x" * 500):
        calls.clear()
        a.identify(f"Bearer {given}")
        # All of them, whichever matched (or none), and digests of one length whatever was given.
        assert len(calls) == len(TOKENS) and set(calls) == {(32, 32)}


def test_no_token_is_kept_in_clear() -> None:
    a = Authority(TOKENS)
    kept = repr(vars(a))
    assert not any(t in kept or t.encode().hex() in kept for t in TOKENS)


# --- the middleware ---------------------------------------------------------------------------
Seen = list[str]


def _app(authority: Authority, seen: Seen) -> web.Application:
    """An aiohttp app like the worker's: the middleware, and views registered with a policy."""
    async def state(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({**STATE, "saga_id": request.match_info["saga_id"], "source": "live",
                                  "commands": [{"type": "CreatePartner", "data": dict(PARTNER)}]})

    async def start(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"saga_id": "s-2", "status": "accepted"}, status=202)

    async def page(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="<html>dashboard</html>", content_type="text/html")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def faust_table(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"value": PARTNER})

    app = web.Application(middlewares=[auth.middleware(authority)])
    app.router.add_get("/t/api/status/{saga_id}", state)
    app.router.add_post("/t/api/start", start)
    app.router.add_get("/t/dashboard", page)
    app.router.add_get("/t/health", health)
    app.router.add_get("/t/table/{name}/{key}", faust_table)  # registered by Faust, not by `page`
    return app


@pytest.fixture(autouse=True)
def _policies(monkeypatch: pytest.MonkeyPatch) -> None:
    for path, policy in {"/t/api/status/{saga_id}": RoutePolicy(READ), "/t/api/start": RoutePolicy(START),
                         "/t/dashboard": RoutePolicy(READ, browser_page=lambda: "<html>shell</html>"),
                         "/t/health": RoutePolicy(None)}.items():
        monkeypatch.setitem(auth.ROUTES, path, policy)


Client = Callable[[Authority], Awaitable[tuple[TestClient[web.Request, web.Application], Seen]]]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    opened: list[TestClient[web.Request, web.Application]] = []

    async def make(authority: Authority) -> tuple[TestClient[web.Request, web.Application], Seen]:
        seen: Seen = []
        c = TestClient(TestServer(_app(authority, seen)))
        await c.start_server()
        opened.append(c)
        return c, seen

    yield make
    for c in opened:
        await c.close()


def _no_saga_data(body: Any) -> None:
    text = json.dumps(body)
    for value in (*PARTNER.values(), "s-1", "failed"):
        assert value not in text, body


async def test_strangers_get_401_and_nothing_else(client: Client) -> None:
    c, seen = await client(Authority(TOKENS))
    for headers in ({}, bearer("wrong-token-0123456789"), {"Authorization": f"Basic {READER}"}):
        for method, path in (("GET", "/t/api/status/s-1"), ("POST", "/t/api/start"), ("GET", "/t/dashboard"),
                             ("GET", "/t/table/sagas/s-1"), ("GET", "/t/nowhere")):
            r = await c.request(method, path, headers=headers)
            body = await r.json()
            assert r.status == 401 and set(body) <= {"error", "hint"}, (method, path, body)
            assert r.headers["WWW-Authenticate"].startswith('Bearer realm="saga-orchestrator"')
            assert r.headers["Cache-Control"] == "no-store"
            _no_saga_data(body)
    assert seen == []  # no view ran for a stranger


async def test_a_token_without_the_role_gets_403(client: Client) -> None:
    c, seen = await client(Authority(TOKENS))
    r = await c.post("/t/api/start", headers=bearer(READER))
    assert r.status == 403 and await r.json() == {"error": "this token does not hold the start role",
                                                  "required_role": "start"}
    r = await c.get("/t/api/status/s-1", headers=bearer(STARTER))
    assert r.status == 403 and "read" in (await r.json())["error"]
    # A route registered outside `page` (Faust's own) needs operate.
    r = await c.get("/t/table/sagas/s-1", headers=bearer(READER))
    assert r.status == 403 and (await r.json())["required_role"] == "operate"
    assert seen == []
    r = await c.post("/t/api/start", headers=bearer(STARTER))
    assert r.status == 202 and seen == ["/t/api/start"]


async def test_a_reader_sees_personal_data_masked_an_operator_in_clear(client: Client) -> None:
    c, _ = await client(Authority(TOKENS))
    r = await c.get("/t/api/status/s-1", headers=bearer(READER))
    body = await r.json()
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert body["partner"] == {"nombre": "***", "email": "a***@example.com", "telefono": "***",
                               "direccion": "***"}
    assert body["commands"][0]["data"]["email"] == "a***@example.com"
    assert "ana.perez@" not in body["reason"] and "a***@example.com" in body["reason"]
    assert body["saga_id"] == "s-1" and body["status"] == "failed"  # the rest as it is
    for token in (OPERATOR, OPERATES):
        r = await c.get("/t/api/status/s-1", headers=bearer(token))
        body = await r.json()
        assert body["partner"] == PARTNER and body["reason"] == STATE["reason"]


async def test_open_routes_answer_anyone_and_unknown_paths_need_a_token_first(client: Client) -> None:
    c, _ = await client(Authority(TOKENS))
    r = await c.get("/t/health")
    assert r.status == 200 and await r.json() == {"status": "ok"}
    assert (await c.get("/t/nowhere")).status == 401
    assert (await c.get("/t/nowhere", headers=bearer(READER))).status == 404


async def test_a_browser_is_given_the_dashboards_page_with_the_401(client: Client) -> None:
    c, seen = await client(Authority(TOKENS))
    r = await c.get("/t/dashboard", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status == 401 and r.content_type == "text/html" and await r.text() == "<html>shell</html>"
    r = await c.get("/t/dashboard")  # an API client: JSON
    assert r.status == 401 and (await r.json())["error"] == "missing bearer token"
    r = await c.get("/t/dashboard", headers=bearer(STARTER) | {"Accept": "text/html"})
    assert r.status == 403 and await r.text() == "<html>shell</html>"
    r = await c.get("/t/dashboard", headers=bearer(READER))
    assert r.status == 200 and await r.text() == "<html>dashboard</html>" and seen == ["/t/dashboard"]


async def test_open_mode_serves_everything_in_clear(client: Client) -> None:
    c, _ = await client(Authority({}, open_=True))
    r = await c.get("/t/api/status/s-1")
    assert r.status == 200 and (await r.json())["partner"] == PARTNER


async def test_closed_without_tokens_hints_at_the_settings(client: Client) -> None:
    c, _ = await client(Authority({}))
    r = await c.get("/t/api/status/s-1", headers=bearer(OPERATOR))
    body = await r.json()
    assert r.status == 401 and "OPERATOR_TOKEN or API_*_TOKENS" in body["hint"]


async def test_a_json_answer_that_cannot_be_checked_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(body=b"{not json", content_type="application/json")

    monkeypatch.setitem(auth.ROUTES, "/t/broken", RoutePolicy(READ))
    app = web.Application(middlewares=[auth.middleware(Authority(TOKENS))])
    app.router.add_get("/t/broken", broken)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/t/broken", headers=bearer(READER))
        assert r.status == 500 and "not json" not in await r.text()


# --- a status request forwarded to the owner of its partition ------------------------------
async def test_a_forwarded_status_request_is_checked_by_the_owner_with_the_callers_token() -> None:
    """Worker A does not own the saga: Faust's Router._route_req sends the request on to B
    with the caller's headers. B checks the token itself (and masks); A passes B's answer on."""
    owner_seen: Seen = []
    owner = TestServer(_app(Authority(TOKENS), owner_seen))
    await owner.start_server()
    http = aiohttp.ClientSession()
    router = Router(SimpleNamespace(assignor=None, http_client=http,  # type: ignore[arg-type]
                                    conf=SimpleNamespace(canonical_url=URL("http://127.0.0.1:1"))))

    class Driver:  # what Router needs of the web driver: text()
        def text(self, value: str, *, content_type: str, status: int) -> web.Response:
            return web.Response(text=value, content_type=content_type, status=status)

    async def forwarding(request: web.Request) -> web.Response:
        return await router._route_req(owner.make_url("/"), Driver(), request)  # type: ignore[arg-type]

    # A accepts one more token than B (a rotation half done): B's own check answers for it.
    only_a = "only-on-worker-a-0123456789"
    front = web.Application(middlewares=[auth.middleware(Authority({**TOKENS, only_a: [READ]}))])
    front.router.add_get("/t/api/status/{saga_id}", forwarding)
    try:
        async with TestClient(TestServer(front)) as c:
            r = await c.get("/t/api/status/s-9", headers=bearer(READER))
            body = await r.json()
            assert r.status == 200 and body["saga_id"] == "s-9" and body["partner"]["nombre"] == "***"
            r = await c.get("/t/api/status/s-9", headers=bearer(OPERATOR))
            assert (await r.json())["partner"] == PARTNER
            assert owner_seen == ["/t/api/status/s-9"] * 2  # answered by the owner, twice
            r = await c.get("/t/api/status/s-9", headers=bearer(only_a))
            assert r.status == 401 and (await r.json())["error"] == "invalid bearer token"
            r = await c.get("/t/api/status/s-9")  # a stranger never reaches the owner
            assert r.status == 401 and len(owner_seen) == 2
    finally:
        await http.close()
        await owner.close()


# --- the worker's own routes ------------------------------------------------------------------
def test_every_route_of_the_worker_has_a_policy_and_only_probes_are_open() -> None:
    from orchestrator import worker  # noqa: F401 - registers every view
    from runtime.app import app

    routes = {r.resource.canonical for r in app.web.web_app.router.routes() if r.resource is not None}
    assert routes <= set(auth.ROUTES)
    open_ = {path for path, policy in auth.ROUTES.items()
             if policy.role is None and not path.startswith("/t/")}
    assert open_ == {"/health", "/ready", "/metrics"}
    assert all(auth.ROUTES[p].role for p in routes if p.startswith("/api/") or p == "/dashboard")
    assert auth.ROUTES["/api/v1/saga/partner-creation"].role == START
    assert auth.ROUTES["/api/v1/sagas/{saga_id}/{action}"].role == OPERATE
    assert {auth.ROUTES[p].role for p in routes if p.startswith("/api/v1/saga")} == {READ, START, OPERATE}
    # Faust's /table (any table's data) and /router (every worker's address) are not served.
    assert app.conf.web_tables_enabled is False and app.conf.web_router_enabled is False
    # The web application the worker serves has the authentication in front (aiohttp copies
    # the middlewares when it is made: the list being filled later would not count).
    assert [m.__qualname__ for m in app.web.web_app.middlewares] == ["middleware.<locals>.authenticate"]
