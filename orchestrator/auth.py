"""Who may call the worker's HTTP API: bearer tokens with roles, checked by one aiohttp
middleware on Faust's web application for every request (README, "Security").

- Each view says, when it is registered (`page(app, path, role=...)`), the role its requests
  need: `read`, `start` or `operate` (runtime.settings.API_ROLES), or None: open to anyone
  (/health, /ready, /metrics: no personal data in them; probes and Prometheus need them).
- A route registered otherwise (Faust's own, were one turned on again) needs `operate`; a
  path no route matches needs a valid token of any role before it is answered 404.
- A token is compared with every configured one, each time all of them, in constant time
  (SHA-256 digests, hmac.compare_digest): neither the time nor the answer says how close a
  guess came. Tokens are never logged.
- No token, or a wrong one: 401; a token without the route's role: 403. The body is
  `{error, ...}` saying what was wrong, never anything about a saga. A browser asking for the
  dashboard is given its page (code, no data) with the same status: the page then asks for
  a token and sends it with every call.
- `operate` implies `read`; only `operate` sees the partners' personal data: every JSON
  answer to a caller without it is masked (domain.privacy.masked).
- API_AUTH=open: anyone holds every role (a WARNING line at start-up says so).

A status request one worker forwards to the owner of the saga's partition
(faust.app.router.Router._route_req) carries the caller's headers, Authorization included:
the owner checks the same token, as every worker has the same settings, and masks alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from domain.privacy import masked
from runtime.metrics import METRICS
from runtime.settings import API_ROLES, Settings

__all__ = ["OPERATE", "READ", "ROUTES", "START", "Authority", "Principal", "Refusal", "RoutePolicy",
           "middleware", "page", "policy_for"]

log = logging.getLogger(__name__)

READ, START, OPERATE = API_ROLES
#: The role needed by a route that was not registered through `page`.
UNREGISTERED_ROLE = OPERATE
#: What a role brings with it: an operator reads what they operate on.
_IMPLIED = {OPERATE: frozenset({READ})}
_REALM = 'Bearer realm="saga-orchestrator"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RoutePolicy:
    """What a route's requests need: `role` (None: nobody needs a token), and for a page a
    browser opens, its HTML (`browser_page`), given to a refused browser in place of JSON."""

    role: str | None
    browser_page: Callable[[], str] | None = None


#: Path pattern (as given to app.page) -> its policy; filled by `page`.
ROUTES: dict[str, RoutePolicy] = {}
_ANY_TOKEN = RoutePolicy(role="")  # a path no route matches: any valid token, then 404


def page(app: Any, path: str, *, role: str | None,
         browser_page: Callable[[], str] | None = None) -> Callable[[Any], Any]:
    """`app.page(path)`, with the role its requests need (None: open to anyone)."""
    if role is not None and role not in API_ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(API_ROLES)}")
    ROUTES[path] = RoutePolicy(role, browser_page)
    return app.page(path)  # type: ignore[no-any-return]


def policy_for(request: web.Request) -> RoutePolicy:
    resource = request.match_info.route.resource
    if resource is None:
        return _ANY_TOKEN
    return ROUTES.get(resource.canonical, RoutePolicy(UNREGISTERED_ROLE))


@dataclass(frozen=True)
class Principal:
    """A caller the API knows: its roles (with what they imply)."""

    roles: frozenset[str]

    @classmethod
    def of(cls, roles: Iterable[str]) -> Principal:
        given = frozenset(roles)
        return cls(given.union(*(_IMPLIED.get(r, frozenset()) for r in given)))

    @property
    def sees_personal_data(self) -> bool:
        return OPERATE in self.roles


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    extra: Mapping[str, str] = field(default_factory=dict)
    #: RFC 6750's error code in WWW-Authenticate (401 only).
    code: str | None = None


class Authority:
    """The configured tokens, as SHA-256 digests with their roles, and API_AUTH."""

    def __init__(self, tokens: Mapping[str, Iterable[str]], *, open_: bool = False) -> None:
        self.open = open_
        self._digests = tuple((_digest(t), frozenset(r)) for t, r in tokens.items())

    @classmethod
    def from_settings(cls, cfg: Settings) -> Authority:
        return cls(cfg.api_tokens(), open_=cfg.api_auth == "open")

    @property
    def configured(self) -> int:
        return len(self._digests)

    def warnings(self) -> list[str]:
        """What the worker says at start-up about its API's door (one line each)."""
        if self.open:
            return ["API_AUTH=open: the HTTP API and the dashboard answer anyone, with every role "
                    "and the partners' personal data in clear; for a local experiment only "
                    "(README, Security)"]
        if not self._digests:
            return ["no API token is configured: every /api route and /dashboard answer 401 "
                    "(set OPERATOR_TOKEN or API_*_TOKENS; README, Security)"]
        return []

    def identify(self, authorization: str | None) -> Principal | Refusal:
        """The caller an Authorization header names, or why it is refused (401)."""
        if self.open:
            return Principal.of(API_ROLES)
        if not self._digests:
            return Refusal(401, "the HTTP API is closed: no API token is configured on this worker",
                           {"hint": "set OPERATOR_TOKEN or API_*_TOKENS (or API_AUTH=open for a "
                                    "local experiment)"})
        if not authorization or not authorization.strip():
            return Refusal(401, "missing bearer token",
                           {"hint": "send the header Authorization: Bearer <token>"})
        scheme, _, given = authorization.strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return Refusal(401, "the Authorization header is not a bearer token",
                           {"hint": "send the header Authorization: Bearer <token>"}, code="invalid_request")
        roles = self._roles_of(given)
        if roles is None:
            return Refusal(401, "invalid bearer token", code="invalid_token")
        return Principal.of(roles)

    def _roles_of(self, given: str) -> frozenset[str] | None:
        """The roles of a token, or None for an unknown one. Every configured token is
        compared, whatever matched before, and each comparison takes the same time."""
        digest = _digest(given)
        matched, roles = False, set[str]()
        for known, its_roles in self._digests:
            if hmac.compare_digest(digest, known):
                matched = True
                roles |= its_roles
        return frozenset(roles) if matched else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _refused(request: web.Request, policy: RoutePolicy, refusal: Refusal) -> web.Response:
    METRICS.inc("http_auth_refused_total", status=str(refusal.status))
    headers = {"Cache-Control": "no-store"}
    if refusal.status == 401:
        headers["WWW-Authenticate"] = _REALM + (f', error="{refusal.code}"' if refusal.code else "")
    if policy.browser_page is not None and "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=policy.browser_page(), status=refusal.status, content_type="text/html",
                            headers=headers)
    return web.json_response({"error": refusal.error, **refusal.extra}, status=refusal.status,
                             headers=headers)


def _masked(response: web.StreamResponse) -> web.StreamResponse:
    """A JSON answer with the personal data masked. One whose body cannot be read as JSON is
    not sent at all (it could not be checked)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    body = response.body
    if not body:
        return response
    try:
        doc = json.loads(body if isinstance(body, bytes | bytearray) else b"")
    except (ValueError, UnicodeDecodeError):
        log.error("an answer to a reader without the operate role could not be checked for personal "
                  "data; a 500 was sent instead")
        return web.json_response({"error": "internal error"}, status=500)
    response.body = json.dumps(masked(doc)).encode()
    return response


def middleware(authority: Authority) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The aiohttp middleware enforcing `authority` on every request (create_app installs it)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        policy = policy_for(request)
        if policy.role is None:
            return await handler(request)
        who = authority.identify(request.headers.get("Authorization"))
        if isinstance(who, Refusal):
            return _refused(request, policy, who)
        if policy.role and policy.role not in who.roles:
            return _refused(request, policy, Refusal(403, f"this token does not hold the {policy.role} role",
                                                     {"required_role": policy.role}))
        response = await handler(request)
        if not who.sees_personal_data:
            response = _masked(response)
        if not response.prepared:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return authenticate
