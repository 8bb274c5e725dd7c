"""Endpoints for operations: saga lists and history (from the PostgreSQL snapshots), operator
retry/cancel/erase, readiness, and the dashboard page. JSON errors everywhere, never a 500 for a
bad request."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from pydantic import ValidationError

from agents.partner_saga import DEFINITIONS
from bridges.pulsar_inbound import INBOUND_TOPICS, LINK, SUBSCRIBE_ERRORS, SUBSCRIBED
from bridges.pulsar_outbound import FAILING_TOPICS, OUTBOUND_TOPICS
from domain.lifecycle import erasure_refusal
from domain.messages import CancelRequested, ErasureRequested, RetryRequested, SagaEvent
from orchestrator.auth import OPERATE, READ
from orchestrator.services import STORE, readiness
from orchestrator.web import BadRequest, page, read_body
from runtime.app import app
from runtime.errors import BadQuery, StoreUnavailable
from runtime.metrics import METRICS
from snapshots.store import TERMINAL_STATUSES
from streams.partner_saga import saga_events
from wire.internal import SagaEnvelope

__all__ = ["ActiveSagas", "DashboardPage", "NeedsAttention", "OperatorAction", "PartnerErasure", "ReadyView",
           "SagaCounts", "SagaHistory", "SagaList"]

#: Every status of every flow (a list filter naming another one is a 400).
log = logging.getLogger(__name__)
DEFINITION_COUNTS_EVERY_S = 30.0
_STATUSES = {str(x) for d in DEFINITIONS for x in d.statuses}  # of every deployed flow version
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


@page("/api/v1/sagas/definitions", role=READ)
class SagaDefinitions(View):
    """Every flow version this worker runs or the snapshots still hold sagas of: how many
    sagas of it are left (not ended, or waiting for a person), whether it is the newest (new
    sagas take it), and whether it may leave the deployment (deployed, not the newest, none
    left). The snapshots lag the live tables by SNAPSHOT_LAG (saga_snapshot_lag_records): a
    version is removable once that lag was 0 after its count reached 0."""

    async def get(self, request: Request) -> Response:
        try:
            left = await STORE.definitions()
        except StoreUnavailable as exc:
            return _unavailable(self, exc)
        return self.json({"definitions": definition_report(left)})


@app.timer(interval=DEFINITION_COUNTS_EVERY_S, name="definition-counts")
async def _count_definitions() -> None:
    await refresh_definition_counts()


async def refresh_definition_counts() -> None:
    """saga_definition_sagas_left, from the snapshots (kept as it was while they do not answer)."""
    try:
        left = await STORE.definitions()
    except Exception as exc:  # PostgreSQL away, the store not open or migrated yet: next time
        log.debug("definition counts not refreshed: %r", exc)
        return
    METRICS.set_all("definition_sagas_left", [({"flow": d["flow"], "version": str(d["version"])},
                                               float(d["sagas_left"])) for d in definition_report(left)])


def definition_report(left: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deployed versions and those the snapshots name, with their sagas left."""
    counts = {(d["flow"], d["version"]): d["sagas_left"] for d in left}
    deployed = {(d.name, d.version) for d in DEFINITIONS}
    newest = {(d.name, d.version) for d in (DEFINITIONS.newest(n) for n in {n for n, _ in deployed})}
    out = []
    for flow, version in sorted(deployed | set(counts)):
        n = counts.get((flow, version), 0)
        out.append({"flow": flow, "version": version, "deployed": (flow, version) in deployed,
                    "newest": (flow, version) in newest, "sagas_left": n,
                    "removable": (flow, version) in deployed and (flow, version) not in newest and n == 0})
    return out


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


async def _record(saga_id: str, event: SagaEvent) -> str | None:
    """Put an operator's request in the saga's own stream; None once Kafka has it, else why not."""
    env = SagaEnvelope(event=event, origin="http", received_at=time.time())
    try:
        await (await saga_events.send(key=saga_id.encode(), value=env.model_dump_json().encode()))
    except KafkaError as exc:
        return type(exc).__name__
    return None


@page("/api/v1/sagas/{saga_id}/{action}", role=OPERATE)
class OperatorAction(View):
    """POST .../retry (a saga in compensation_failed tries its undo again), .../cancel (a live
    saga stops and undoes what it did) and .../erase (a finished saga forgets the partner's
    personal data: the right to erasure). A token with the `operate` role (the middleware,
    orchestrator/auth.py). Carried out by an event in the saga's own stream; the saga decides
    whether it applies."""

    async def post(self, request: Request, saga_id: str, action: str) -> Response:
        if action not in ("retry", "cancel", "erase"):
            return _error(self, 404, f"no such action {action!r}; use retry, cancel or erase")
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
        if action == "erase":
            return await self._erase(saga_id, known)
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
        failed = await _record(saga_id, event)
        if failed is not None:
            return _error(self, 503, "cannot record the request in Kafka; retry", detail=failed)
        return self.json({"accepted": True, "saga_id": saga_id, "request_id": request_id,
                          "status_before": known["status"] if known else None,
                          "existence_verified": verified,
                          "status_url": f"/api/v1/saga/status/{saga_id}"}, status=202)

    async def _erase(self, saga_id: str, known: dict[str, Any] | None) -> Response:
        """200 when the saga holds no personal data any more (erased, or retained: its
        tombstone and row keep none), 409 while it runs or waits for a person, else 202: the
        request is in the saga's stream. The answer never echoes personal data."""
        outcome = await _erase_one(saga_id, known)
        body = {"saga_id": saga_id, **outcome, "status_url": f"/api/v1/saga/status/{saga_id}"}
        return self.json(body, status=_ERASE_STATUS[outcome["outcome"]])


#: An erasure's outcome and the HTTP status that answers it.
_ERASE_STATUS = {"accepted": 202, "already_erased": 200, "refused": 409, "unavailable": 503}


async def _erase_one(saga_id: str, known: dict[str, Any] | None) -> dict[str, Any]:
    """Ask saga `saga_id`, as its snapshot `known` shows it (None: PostgreSQL could not say),
    to erase the partner's personal data; what came of it, as `{"outcome": ..., ...}`."""
    if known is not None:
        status = known.get("status")
        if known.get("tombstone"):
            return {"outcome": "already_erased", "saga_status": status,
                    "detail": "the saga left the live tables (retention) without its personal data"}
        if known.get("erased_at") is not None:
            return {"outcome": "already_erased", "saga_status": status, "erased_at": known["erased_at"]}
        refused = erasure_refusal(str(status))
        if refused is not None:
            return {"outcome": "refused", "saga_status": status, "error": refused}
    request_id = f"erase:{saga_id}:{uuid.uuid4()}"
    failed = await _record(saga_id, ErasureRequested(event_id=request_id, saga_id=saga_id))
    if failed is not None:
        return {"outcome": "unavailable", "error": "cannot record the request in Kafka; retry",
                "detail": failed}
    return {"outcome": "accepted", "request_id": request_id, "existence_verified": known is not None,
            "saga_status": known.get("status") if known else None}


@page("/api/v1/partners/{partner_id}/erase", role=OPERATE)
class PartnerErasure(View):
    """POST: erase one partner's personal data from every saga that names the partner (the
    right to erasure), each as `POST /api/v1/sagas/{id}/erase` would. 404 when no saga names
    it; else each saga's outcome, with 202 if any erasure was accepted, 409 if none was and
    one was refused (running, or waiting for a person), 200 if all were already erased."""

    async def post(self, request: Request, partner_id: str) -> Response:
        try:
            found: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                rows, cursor = await STORE.list(partner_id=partner_id, limit=500, cursor=cursor)
                found.extend(rows)
                if not cursor:
                    break
        except StoreUnavailable as exc:
            return _unavailable(self, exc)
        except BadQuery as exc:
            return _error(self, 400, str(exc))
        if not found:
            return _error(self, 404, "no saga names this partner", partner_id=partner_id)
        sagas = []
        for row in found:
            try:
                known = await STORE.get(row["saga_id"])
            except StoreUnavailable as exc:  # the ones asked so far are asked again: no harm
                return _unavailable(self, exc)
            sagas.append({"saga_id": row["saga_id"], **await _erase_one(row["saga_id"], known or row)})
        outcomes = {s["outcome"] for s in sagas}
        status = (503 if "unavailable" in outcomes else 202 if "accepted" in outcomes
                  else 409 if "refused" in outcomes else 200)
        return self.json({"partner_id": partner_id, "sagas": sagas}, status=status)


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
