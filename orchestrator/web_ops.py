"""Endpoints for operations: saga lists and history (from the PostgreSQL snapshots), operator
retry/cancel, readiness, and the dashboard page. JSON errors everywhere, never a 500 for a
bad request."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from pydantic import ValidationError

from bridges.pulsar_inbound import INBOUND_TOPICS, LINK, SUBSCRIBE_ERRORS, SUBSCRIBED
from bridges.pulsar_outbound import FAILING_TOPICS, OUTBOUND_TOPICS
from domain.definition import definitions
from domain.messages import CancelRequested, RetryRequested
from orchestrator.app import page
from orchestrator.auth import OPERATE, READ
from orchestrator.services import STORE, readiness
from orchestrator.web import BadRequest, read_body
from snapshots.errors import BadQuery, StoreUnavailable
from snapshots.store import TERMINAL_STATUSES
from streams.partner_saga import saga_events
from wire.internal import SagaEnvelope

__all__ = ["ActiveSagas", "DashboardPage", "NeedsAttention", "OperatorAction", "ReadyView", "SagaCounts",
           "SagaHistory", "SagaList"]

#: Every status of every flow (a list filter naming another one is a 400).
_STATUSES = {str(x) for d in definitions().values() for x in d.statuses}
_DASHBOARD = Path(__file__).with_name("dashboard.html")


def _error(view: View, status: int, message: str, **extra: Any) -> Response:
    return view.json({"error": message, **extra}, status=status)


def _unavailable(view: View, exc: StoreUnavailable) -> Response:
    return _error(view, 503, "snapshot store unavailable; live state is at /api/v1/saga/status/{id}",
                  detail=exc.public)


def _limit(request: Request) -> int:
    raw = request.query.get("limit", "50")
    try:
        n = int(raw)
    except ValueError as exc:
        raise BadQuery(f"limit must be an integer, got {raw!r}") from exc
    if not 1 <= n <= 500:
        raise BadQuery(f"limit must be between 1 and 500, got {n}")
    return n


def _statuses(request: Request) -> list[str] | None:
    raw = request.query.get("status")
    if not raw:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = sorted(set(wanted) - _STATUSES)
    if unknown:
        raise BadQuery(f"unknown status {', '.join(unknown)}; one of {', '.join(sorted(_STATUSES))}")
    return wanted


async def _page(view: View, request: Request, statuses: list[str] | None) -> Response:
    try:
        origin = request.query.get("origin") or None
        if origin not in (None, "http", "partner_event"):
            raise BadQuery(f"origin must be http or partner_event, got {origin!r}")
        rows, nxt = await STORE.list(status=statuses, partner_id=request.query.get("partner_id") or None,
                                     origin=origin, search=(request.query.get("q") or "").strip() or None,
                                     limit=_limit(request), cursor=request.query.get("cursor") or None)
    except BadQuery as exc:
        return _error(view, 400, str(exc))
    except StoreUnavailable as exc:
        return _unavailable(view, exc)
    return view.json({"sagas": rows, "next_cursor": nxt})


@page("/api/v1/sagas", role=READ)
class SagaList(View):
    """`?status=a,b&origin=&q=&partner_id=&limit=&cursor=`: sagas newest first, from the
    snapshots; `q` is a saga id, partner id or correlation id."""

    async def get(self, request: Request) -> Response:
        try:
            statuses = _statuses(request)
        except BadQuery as exc:
            return _error(self, 400, str(exc))
        return await _page(self, request, statuses)


@page("/api/v1/saga/active", role=READ)
class ActiveSagas(View):
    """Sagas not yet in a terminal status (the first version's endpoint), paginated."""

    async def get(self, request: Request) -> Response:
        live = sorted(_STATUSES - set(TERMINAL_STATUSES))
        return await _page(self, request, live)


@page("/api/v1/sagas/attention", role=READ)
class NeedsAttention(View):
    """Sagas a person should look at: in compensation_failed, or live with a deadline that
    passed `?overdue_s=` (default 10) seconds ago without firing; each with its reason."""

    async def get(self, request: Request) -> Response:
        try:
            overdue = float(request.query.get("overdue_s", "10"))
        except ValueError:
            return _error(self, 400, "overdue_s must be a number of seconds")
        try:
            return self.json({"sagas": await STORE.attention(overdue_s=max(0.0, overdue))})
        except StoreUnavailable as exc:
            return _unavailable(self, exc)


@page("/api/v1/sagas/counts", role=READ)
class SagaCounts(View):
    async def get(self, request: Request) -> Response:
        try:
            return self.json({"counts": await STORE.counts()})
        except StoreUnavailable as exc:
            return _unavailable(self, exc)


@page("/api/v1/sagas/{saga_id}/history", role=READ)
class SagaHistory(View):
    async def get(self, request: Request, saga_id: str) -> Response:
        try:
            rows = await STORE.history(saga_id)
        except StoreUnavailable as exc:
            return _unavailable(self, exc)
        except BadQuery as exc:
            return _error(self, 400, str(exc))
        if not rows:
            return _error(self, 404, "no such saga (or no snapshot yet)", saga_id=saga_id)
        return self.json({"saga_id": saga_id, "transitions": rows})


@page("/api/v1/sagas/{saga_id}/{action}", role=OPERATE)
class OperatorAction(View):
    """POST .../retry (a saga in compensation_failed tries its undo again) and .../cancel (a
    live saga stops and undoes what it did). A token with the `operate` role (the middleware,
    orchestrator/auth.py). Carried out by an event in the saga's own stream; the saga decides
    whether it applies."""

    async def post(self, request: Request, saga_id: str, action: str) -> Response:
        if action not in ("retry", "cancel"):
            return _error(self, 404, f"no such action {action!r}; use retry or cancel")
        reason = "cancelled by operator"
        try:
            body = await read_body(self, request)
        except BadRequest as bad:
            return bad.response
        if body:
            try:
                doc = json.loads(body)
                reason = str(doc.get("reason") or reason) if isinstance(doc, dict) else reason
            except (UnicodeDecodeError, json.JSONDecodeError):
                return _error(self, 400, "body is not valid JSON")
        # The snapshots say whether the saga exists. Without them (PostgreSQL down) the request
        # still goes through: the saga applies it, ignores it, or dead-letters an unknown id.
        verified = True
        try:
            known = await STORE.get(saga_id)
        except StoreUnavailable:
            known, verified = None, False
        except BadQuery as exc:
            return _error(self, 400, str(exc))
        if verified and known is None:
            return _error(self, 404, "no such saga", saga_id=saga_id)
        refused = _refusal(action, known) if known is not None else None
        if refused is not None:
            return _error(self, 409, refused, saga_id=saga_id,
                          saga_status=known.get("status") if known else None)
        request_id = f"{action}:{saga_id}:{uuid.uuid4()}"
        try:
            event = (RetryRequested(event_id=request_id, saga_id=saga_id) if action == "retry" else
                     CancelRequested(event_id=request_id, saga_id=saga_id, reason=reason[:2000]))
        except ValidationError as exc:
            return _error(self, 400, "invalid request", details=str(exc))
        env = SagaEnvelope(event=event, origin="http", received_at=time.time())
        try:
            await (await saga_events.send(key=saga_id.encode(), value=env.model_dump_json().encode()))
        except KafkaError as exc:
            return _error(self, 503, "cannot record the request in Kafka; retry", detail=type(exc).__name__)
        return self.json({"accepted": True, "saga_id": saga_id, "request_id": request_id,
                          "status_before": known["status"] if known else None,
                          "existence_verified": verified,
                          "status_url": f"/api/v1/saga/status/{saga_id}"}, status=202)


def _refusal(action: str, known: dict[str, Any]) -> str | None:
    """Why `action` cannot apply to a saga as its snapshot shows it, or None. Only what cannot
    change is refused: an end other than compensation_failed is final, and a retained saga
    left the live tables (a snapshot that lags a live saga lets the request through; the saga
    applies or ignores it)."""
    status = known.get("status")
    if known.get("tombstone"):
        return (f"saga ended {status} and left the live tables (retention): there is nothing to "
                f"{action}")
    if action == "retry" and status in TERMINAL_STATUSES and status != "compensation_failed":
        return f"retry only applies to a saga in compensation_failed; this one ended {status}"
    if action == "cancel" and status in TERMINAL_STATUSES:
        return f"cannot cancel a saga that ended {status}"
    return None


@page("/ready", role=None)
class ReadyView(View):
    async def get(self, request: Request) -> Response:
        wanted = set(INBOUND_TOPICS)
        report = await readiness(wanted, set(SUBSCRIBED), set(OUTBOUND_TOPICS), LINK.ready_topics,
                                 FAILING_TOPICS, dict(SUBSCRIBE_ERRORS))
        return self.json(report, status=200 if report["ready"] else 503)


def _dashboard() -> str:
    return _DASHBOARD.read_text()


# The page is code without data (the data comes from the API, with the token it asks for):
# a browser without a token is given it with the 401, and the page asks for one.
@page("/dashboard", role=READ, browser_page=_dashboard)
class DashboardPage(View):
    async def get(self, request: Request) -> Response:
        return self.html(_dashboard())
