"""Out to the Alpes services as they are (PARTICIPANTS=alpes; README, "Participant profiles").

The saga engine's commands to integraciones become its own API calls, off the saga agent's
path like Pulsar sends: `Outbound.send` hands them here and goes on, and each call's outcome
comes back as an event, to the saga's stream or (a created partner) to the partner index.
- `CreatePartner`: first the saga claims the partner's email at the partner index (a Kafka
  write, awaited), so that integraciones' `PartnerCreado`, which names only the partner, can
  be matched to it whatever arrives first; then `POST /api/v1/partners` with
  `Idempotency-Key` = the command id (or, with INTEGRACIONES_TRANSPORT=pulsar, the Avro
  command on `comando-crear-partner`, whose only answer is PartnerCreado).
  201: PartnerCreated. 400, or 409 when no earlier try may have made the partner:
  PartnerCreationFailed. 409 after a try whose outcome is unknown (a 5xx, a timeout, or an
  earlier attempt of the step): the partner is looked up by email; found, it is the saga's,
  and no second partner is made.
- `DeletePartner`: `DELETE /api/v1/partners/{id}` (by email when the id never came back);
  200, 404 and 410 mean undone (PartnerDeleted), anything else after the tries
  PartnerDeleteFailed (the saga retries with backoff, then ends in compensation_failed).
- `lookup(partner_id)`: `GET /api/v1/partners/{id}`, for a PartnerCreado nobody claimed yet;
  the answer goes to the partner index keyed by the partner's email.
5xx answers and connection errors are retried PARTICIPANT_HTTP_ATTEMPTS times with backoff
within a call. A call that gets no answer at all reports nothing: the saga's step deadline
sends the command again (its next attempt), which is also what happens when a worker dies
in the middle of a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from bridges.pulsar_client import is_permanent
from bridges.pulsar_inbound import LINK
from domain.messages import (
    Command,
    Destination,
    PartnerCreationFailed,
    PartnerDeleted,
    PartnerDeleteFailed,
)
from orchestrator.app import cfg
from orchestrator.metrics import METRICS
from streams.partner_saga import partner_routing, saga_events
from wire.alpes import encode_crear_partner
from wire.internal import PartnerRouted, RoutingNote, SagaEnvelope

__all__ = ["ALPES", "AlpesCalls", "email_key"]

log = logging.getLogger(__name__)
_PARTNER_FIELDS = ("nombre", "email", "telefono", "direccion")


def email_key(email: str) -> str:
    """The partner index's key for an email claim (emails compare case-insensitively)."""
    return "email:" + email.strip().lower()


def _partner_of(body: Any) -> dict[str, Any] | None:
    """The partner in an integraciones answer: `{"partner": {...}}` or the partner itself."""
    if isinstance(body, dict) and isinstance(body.get("partner"), dict):
        body = body["partner"]
    if (
        isinstance(body, dict)
        and isinstance(body.get("id"), str | int)
        and isinstance(body.get("email"), str)
    ):
        return body
    return None


class AlpesCalls:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def handles(cmd: Command) -> bool:
        return cfg.participants == "alpes" and cmd.destination == Destination.INTEGRACIONES

    def dispatch(self, cmd: Command) -> None:
        """Carry out `cmd` in the background; its outcome comes back as an event."""
        if cmd.type == "CreatePartner":
            self._spawn(self._create(cmd), cmd.type)
        elif cmd.type == "DeletePartner":
            self._spawn(self._delete(cmd), cmd.type)
        else:
            log.error("alpes: no call for command %s of saga %s", cmd.type, cmd.saga_id)

    def lookup(self, partner_id: str) -> None:
        self._spawn(self._lookup(partner_id), "lookup")

    def _spawn(self, coro: Any, what: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"alpes {what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %r", task.get_name(), task.exception())

    # --- HTTP
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.http_timeout_s))
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int | None, Any, bool]:
        """(status, JSON body or None, unsure): the first answer that is not a 5xx, else the
        last; status None when no try got an answer. `unsure`: some try may have been
        carried out without our knowing (a 5xx, a timeout, a dropped connection)."""
        url = cfg.integraciones_api_url.rstrip("/") + path
        status: int | None = None
        answer: Any = None
        unsure = False
        for n in range(cfg.http_attempts):
            if n:
                await asyncio.sleep(min(0.2 * 2 ** (n - 1), 5.0))
            try:
                async with self._http().request(method, url, json=body, headers=headers) as r:
                    status = r.status
                    text = await r.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                METRICS.inc("participant_calls_total", method=method, status="error")
                log.warning("alpes: %s %s: %r (try %d of %d)", method, url, exc, n + 1, cfg.http_attempts)
                status, answer, unsure = None, None, True
                continue
            METRICS.inc("participant_calls_total", method=method, status=str(status))
            try:
                answer = json.loads(text) if text else None
            except ValueError:
                answer = text[:500]
            if status < 500:
                return status, answer, unsure
            unsure = True
            log.warning(
                "alpes: %s %s answered %d (try %d of %d)", method, url, status, n + 1, cfg.http_attempts
            )
        return status, answer, unsure

    async def _find_by_email(self, email: str) -> tuple[bool, dict[str, Any] | None]:
        """(answered, the live partner with that email, else any with it, else None)."""
        status, body, _ = await self._call("GET", "/api/v1/partners")
        if status != 200 or not isinstance(body, list | dict):
            return False, None
        items = body if isinstance(body, list) else body.get("partners") or []
        found = [
            p for p in map(_partner_of, items) if p and p["email"].strip().lower() == email.strip().lower()
        ]
        live = [p for p in found if str(p.get("estado", "")).upper() != "ELIMINADO"]
        best = live or found
        return True, best[0] if best else None

    # --- outcomes
    async def _to_saga(self, cmd: Command, event: Any, raw: str) -> None:
        env = SagaEnvelope(event=event, raw=raw, origin=cfg.integraciones_api_url, received_at=time.time())
        await (await saga_events.send(key=cmd.saga_id.encode(), value=env.model_dump_json().encode()))

    async def _created(self, cmd: Command, partner: dict[str, Any], raw: str) -> None:
        """To the partner index, which registers the partner with the saga (and hands it any
        event of that partner it parked meanwhile), then to the saga."""
        pid = str(partner["id"])
        msg = PartnerRouted(
            type="PartnerCreated",
            event_id=f"http:{cmd.command_id}:created",
            saga_id=cmd.saga_id,
            correlation_id=cmd.correlation_id,
            partner_id=pid,
            fields={"partner_id": pid, "partner": {k: partner.get(k) for k in _PARTNER_FIELDS}},
            raw=raw,
            origin=cfg.integraciones_api_url,
            received_at=time.time(),
        )
        await (await partner_routing.send(key=pid.encode(), value=msg.model_dump_json().encode()))

    async def _failed(self, cmd: Command, reason: str, raw: str) -> None:
        await self._to_saga(
            cmd,
            PartnerCreationFailed(
                event_id=f"http:{cmd.command_id}:failed",
                saga_id=cmd.saga_id,
                correlation_id=cmd.correlation_id,
                reason=reason[:2000],
            ),
            raw,
        )

    # --- commands
    async def _claim(self, email: str, saga_id: str) -> None:
        note = RoutingNote(note="claim-email", email=email.strip().lower(), saga_id=saga_id, at=time.time())
        await (
            await partner_routing.send(key=email_key(email).encode(), value=note.model_dump_json().encode())
        )

    async def _create(self, cmd: Command) -> None:
        email = str(cmd.data.get("email", ""))
        await self._claim(email, cmd.saga_id)
        if cfg.integraciones_transport == "pulsar":
            await self._send_avro(cmd)
            return
        status, body, unsure = await self._call(
            "POST", "/api/v1/partners", body=cmd.data, headers={"Idempotency-Key": cmd.command_id}
        )
        raw = json.dumps(body)[:4000] if body is not None else ""
        partner = _partner_of(body)
        if status == 201 and partner is not None:
            await self._created(cmd, partner, raw)
        elif status == 409 and (unsure or cmd.attempt > 1 or cmd.repeat):
            # An earlier try may have made it: the partner with this email is ours.
            answered, found = await self._find_by_email(email)
            if found is not None:
                log.info(
                    "alpes: saga %s: 409 after an unsure try; partner %s found by email",
                    cmd.saga_id,
                    found["id"],
                )
                await self._created(cmd, found, json.dumps(found))
            elif answered:
                await self._failed(cmd, f"HTTP 409 {_code(body)}, and no partner with email {email}", raw)
        elif status is not None and 400 <= status < 500:
            await self._failed(cmd, f"HTTP {status} {_code(body)}", raw)
        else:  # no answer, or 5xx every time: the saga's deadline sends the next attempt
            log.warning(
                "alpes: saga %s: POST /api/v1/partners gave no usable answer (%s)", cmd.saga_id, status
            )

    async def _send_avro(self, cmd: Command) -> None:
        topic = cfg.pulsar_topic(cfg.alpes_comando_crear_partner_topic)
        payload = encode_crear_partner(cmd.data)
        delay = 0.2
        while True:
            (err,) = await LINK.send_batch(
                [(topic, payload, {"sagaid": cmd.saga_id, "type": cmd.type}, cmd.saga_id)]
            )
            if err is None:
                METRICS.inc("commands_sent_total", type=cmd.type)
                return
            if is_permanent(err):  # the saga's deadline gives up on the step in time
                log.error("alpes: %s refuses the command of saga %s: %r", topic, cmd.saga_id, err)
                return
            LINK.drop_producer_if_closed(topic, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _delete(self, cmd: Command) -> None:
        pid = cmd.data.get("partner_id")
        event_id = f"http:{cmd.command_id}"
        if not pid:  # the create's answer never came: find what it may have made by email
            answered, found = await self._find_by_email(str(cmd.data.get("email", "")))
            if not answered:
                await self._to_saga(
                    cmd,
                    PartnerDeleteFailed(
                        event_id=f"{event_id}:failed",
                        saga_id=cmd.saga_id,
                        reason="cannot list partners to find it",
                    ),
                    "",
                )
                return
            if found is None or str(found.get("estado", "")).upper() == "ELIMINADO":
                await self._to_saga(
                    cmd, PartnerDeleted(event_id=f"{event_id}:deleted", saga_id=cmd.saga_id), ""
                )
                return
            pid = str(found["id"])
        status, body, _ = await self._call("DELETE", f"/api/v1/partners/{quote(str(pid), safe='')}")
        raw = json.dumps(body)[:4000] if body is not None else ""
        if status in (200, 204, 404, 410):
            await self._to_saga(
                cmd,
                PartnerDeleted(event_id=f"{event_id}:deleted", saga_id=cmd.saga_id, partner_id=str(pid)),
                raw,
            )
        else:
            why = f"HTTP {status} {_code(body)}" if status is not None else "no answer"
            await self._to_saga(
                cmd,
                PartnerDeleteFailed(
                    event_id=f"{event_id}:failed",
                    saga_id=cmd.saga_id,
                    partner_id=str(pid),
                    reason=f"DELETE: {why}",
                ),
                raw,
            )

    async def _lookup(self, partner_id: str) -> None:
        delay = 1.0
        for _ in range(8):  # about four minutes; the partner index asks again on its next event
            status, body, _ = await self._call("GET", f"/api/v1/partners/{quote(partner_id, safe='')}")
            partner = _partner_of(body)
            if status == 200 and partner is not None:
                note = RoutingNote(
                    note="looked-up",
                    email=partner["email"].strip().lower(),
                    partner_id=partner_id,
                    partner={k: partner.get(k) for k in _PARTNER_FIELDS},
                    at=time.time(),
                )
                await (
                    await partner_routing.send(
                        key=email_key(partner["email"]).encode(), value=note.model_dump_json().encode()
                    )
                )
                return
            if status == 404:
                note = RoutingNote(note="claimed", partner_id=partner_id, saga_id=None, at=time.time())
                await (
                    await partner_routing.send(key=partner_id.encode(), value=note.model_dump_json().encode())
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        log.error("alpes: cannot look partner %s up at %s", partner_id, cfg.integraciones_api_url)


def _code(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("codigo") or body.get("error") or "")[:200]
    return ""


ALPES = AlpesCalls()
