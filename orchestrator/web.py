"""HTTP endpoints on the worker's web server (JSON everywhere, errors included)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web as aioweb
from aiokafka.errors import KafkaError
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from pydantic import ConfigDict, Field, ValidationError

from common.version import commit, version
from domain import ids
from domain.lifecycle import Tombstone
from domain.messages import PartnerData, StartSaga
from domain.state import TERMINAL
from orchestrator import auth
from orchestrator.auth import READ, START
from orchestrator.services import STORE
from runtime.app import WEB_MIDDLEWARES, app, cfg
from runtime.errors import StoreUnavailable
from runtime.metrics import METRICS
from streams.partner_saga import saga_events
from tables.partner_saga import sagas
from wire.internal import SagaEnvelope
from wire.stored import SAGA_STATE, TOMBSTONE

__all__ = ["MAX_BODY_BYTES", "BadRequest", "HealthView", "MetricsView", "SagaStatusView",
           "StartPartnerCreation", "read_body"]


# Every request goes through the API's authentication (orchestrator/auth.py). aiohttp copies
# the middlewares when Faust makes its web application, at the first view registered: so here,
# before `page` registers any.
if not WEB_MIDDLEWARES:
    WEB_MIDDLEWARES.append(auth.middleware(auth.Authority.from_settings(cfg)))


def page(path: str, *, role: str | None,
         browser_page: Callable[[], str] | None = None) -> Callable[[Any], Any]:
    """`app.page(path)` with the role its requests need: `read`, `start`, `operate`, or None
    (open to anyone); see orchestrator/auth.py."""
    return auth.page(app, path, role=role, browser_page=browser_page)

log = logging.getLogger(__name__)

#: Request bodies are small JSON documents; a larger one is refused (413) before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class StartRequest(PartnerData):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    correlation_id: str | None = Field(None, min_length=1, max_length=200)


def _error(view: View, status: int, message: str, **extra: Any) -> Response:
    return view.json({"error": message, **extra}, status=status)


def _validation_message(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]


async def read_body(view: View, request: Request) -> bytes:
    """The request's body, or BadRequest (413, JSON) past MAX_BODY_BYTES. aiohttp itself stops
    reading at 1 MiB (client_max_size), so a body without Content-Length costs that at most."""
    too_large = BadRequest(_error(view, 413, f"request body over {MAX_BODY_BYTES} bytes"))
    length = getattr(request, "content_length", None)
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large
    try:
        body = await request.read()
    except aioweb.HTTPRequestEntityTooLarge:
        raise too_large from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    return body


async def _json_body(view: View, request: Request) -> Any:
    body = await read_body(view, request)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(_error(view, 400, f"body is not valid JSON: {exc}")) from exc
    except RecursionError as exc:
        raise BadRequest(_error(view, 400, "body is not valid JSON: nested too deeply")) from exc


class BadRequest(Exception):
    """A request answered with `response` (4xx, JSON) before it is looked at further."""

    def __init__(self, response: Response) -> None:
        self.response = response


@page("/api/v1/saga/partner-creation", role=START)
class StartPartnerCreation(View):
    """Start a saga: 202 with its id. Answered by any worker (it produces an event; POST
    bodies are not forwarded between workers). Idempotent per correlation_id."""

    async def post(self, request: Request) -> Response:
        try:
            body = await _json_body(self, request)
        except BadRequest as bad:
            return bad.response
        if not isinstance(body, dict):
            return _error(self, 400, "body must be a JSON object")
        try:
            req = StartRequest.model_validate(body)
        except ValidationError as exc:
            return _error(self, 422, "invalid request", details=_validation_message(exc))
        correlation_id = req.correlation_id or str(uuid.uuid4())
        saga_id = answer_id = ids.saga_id_for_correlation(correlation_id)
        if req.correlation_id is not None:
            ended = await _ended_saga(correlation_id)
            if ended is not None and time.time() < ended["ended_at"] + cfg.saga_dedupe_horizon_s:
                # A start for a business key whose saga finished: answered with that saga.
                METRICS.inc("http_duplicate_starts_total")
                return self.json({"saga_id": ended["saga_id"], "correlation_id": correlation_id,
                                  "status": ended["status"], "duplicate_of_finished_saga": True,
                                  "status_url": f"/api/v1/saga/status/{ended['saga_id']}"}, status=200)
            if ended is not None and ended.get("tombstone"):
                # After the dedupe horizon: the key's next saga, which the start opens at the
                # first saga's tombstone (domain.lifecycle).
                answer_id = ids.saga_id_generation(saga_id, int(ended.get("generation") or 1) + 1)
        partner = PartnerData.model_validate(req.model_dump(exclude={"correlation_id"}))
        event = StartSaga(event_id=f"start:{saga_id}", saga_id=saga_id, correlation_id=correlation_id,
                          partner=partner)
        env = SagaEnvelope(event=event, origin="http", received_at=time.time())
        try:
            written = await saga_events.send(key=saga_id.encode(), value=env.model_dump_json().encode())
            await written  # durable in Kafka before we answer 202
        except KafkaError as exc:
            log.warning("start request not recorded in Kafka: %r", exc)
            return _error(self, 503, "cannot record the request in Kafka; retry (same correlation_id)",
                          detail=type(exc).__name__)
        METRICS.inc("http_starts_total")
        return self.json({"saga_id": answer_id, "correlation_id": correlation_id, "status": "accepted",
                          "status_url": f"/api/v1/saga/status/{answer_id}"}, status=202)


async def _ended_saga(correlation_id: str) -> dict[str, Any] | None:
    """The newest saga of this correlation id if it has ended, from the snapshots (its saga
    id, status, `ended_at`, and `tombstone`/`generation` when retention removed it); None
    when it runs, never ran, or PostgreSQL does not answer (then the start goes on: a
    duplicate is dead-lettered by the saga agent with its reason, and a live saga ignores it)."""
    try:
        row = await STORE.latest_for_key(correlation_id, origin="http")
    except StoreUnavailable as exc:
        log.warning("start request: cannot check for an ended saga of its correlation_id: %s", exc.public)
        return None
    if row is None or row.get("status") not in TERMINAL:
        return None
    ended_at = row.get("ended_at") if row.get("tombstone") else row.get("updated_at")
    return {**row, "ended_at": float(ended_at or 0.0)}


@page("/api/v1/saga/status/{saga_id}", role=READ)
class SagaStatusView(View):
    """A saga's live state, from the table, answered by the worker owning its partition;
    `source` says `live`, or `snapshot` for a finished saga past its retention."""

    async def get(self, request: Request, saga_id: str) -> Response:
        # What app.table_route does, with the failures answered: the owner of the key's
        # partition may be gone (until the group rebalances) or not known yet. The forwarded
        # request carries the caller's headers, Authorization included: the owner checks the
        # same token (every worker has the same settings) and masks its answer alike.
        try:
            return await app.router.route_req(sagas.name, saga_id, self.web, request)
        except SameNode:
            pass
        except ServiceUnavailable:
            return _error(self, 503, "no worker owns this saga's partition yet; retry shortly")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _error(self, 503, "the worker owning this saga did not answer; retry shortly",
                          detail=type(exc).__name__)
        raw = sagas.get(saga_id)
        if raw is None and (app.rebalancing or app.in_recovery):
            return _error(self, 503, "partition is being recovered; retry shortly", saga_id=saga_id)
        if raw is None or Tombstone.is_one(raw):
            return await self._from_snapshot(saga_id, raw)
        state = SAGA_STATE.load(raw).model_dump(mode="json")  # of any stored version
        return self.json({**_public_state(state), "source": "live"})

    async def _from_snapshot(self, saga_id: str, tombstone: bytes | None) -> Response:
        """A saga retention removed from the table answers from its final snapshot, or, with
        PostgreSQL unreachable, from the tombstone the table keeps (ids and end status)."""
        kept = TOMBSTONE.load(tombstone).model_dump(mode="json") if tombstone is not None else None
        try:
            state = await STORE.get(saga_id)
        except StoreUnavailable:
            if kept is not None:
                return self.json({**kept, "source": "tombstone"})
            return _error(self, 503, "not in the live table, and the snapshots are unreachable; "
                          "retry shortly", saga_id=saga_id)
        if state is None:
            if kept is not None:
                return self.json({**kept, "source": "tombstone"})
            return _error(self, 404, "no such saga", saga_id=saga_id)
        extra = {"retained": True, "generation": kept["generation"], "current": kept.get("current")} \
            if kept is not None else {}
        return self.json({**_public_state(state), **extra, "source": "snapshot"})


def _public_state(state: dict[str, Any]) -> dict[str, Any]:
    """A saga's state as the API shows it: the events it remembers for deduplication are
    left out, the commands they produced (the last ones it sent) are listed."""
    state.pop("sv", None)  # a snapshot's stored schema version: not the API's
    applied = state.pop("applied", None) or []
    state["commands"] = [{"event_id": a.get("event_id"), **{k: c.get(k) for k in
                          ("command_id", "type", "destination", "attempt")}}
                         for a in applied for c in a.get("commands") or ()]
    return state


@page("/health", role=None)
class HealthView(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok", "service": "saga-orchestrator", "version": version(),
                          "commit": commit()})


@page("/metrics", role=None)
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        return self.text(METRICS.render(), content_type="text/plain; version=0.0.4")


