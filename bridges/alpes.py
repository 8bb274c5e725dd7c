"""Out to the Alpes services as they are (PARTICIPANTS=alpes; README, "Participant profiles").

The saga engine's commands to integraciones become its own API calls, off the saga agent's
path like Pulsar sends: `Outbound.send` hands them here and goes on, and each call's outcome
comes back as an event, to the saga's stream or (a created partner) to the partner index.
- `CreatePartner`: first the saga claims the partner's email at the partner index (a Kafka
  write, awaited), so that integraciones' `PartnerCreado`, which names only the partner, can
  be matched to it whatever arrives first; then `POST /api/v1/partners` with
  `Idempotency-Key` = the command id (or, with INTEGRACIONES_TRANSPORT=pulsar, the Avro
  command on `comando-crear-partner`, whose only answer is PartnerCreado; its producer
  registers integraciones' own Avro schema, see bridges/pulsar_inbound.LINK).
  201: PartnerCreated. 400, or 409 when no earlier try may have made the partner:
  PartnerCreationFailed. 409 after a try whose outcome is unknown (a 5xx, a timeout, or an
  earlier attempt of the step): the partner is looked up by email; found, it is the saga's,
  and no second partner is made.
- `DeletePartner`: `DELETE /api/v1/partners/{id}` (by email when the id never came back);
  200, 404 and 410 mean undone (PartnerDeleted), anything else after the tries
  PartnerDeleteFailed (the saga retries with backoff, then ends in compensation_failed).
- `lookup(partner_id)`: `GET /api/v1/partners/{id}`, for a PartnerCreado nobody claimed yet;
  the answer goes to the partner index keyed by the partner's email.

How the calls run (`OrderedCalls`): one saga's commands are carried out one at a time, in the
order the saga decided them (a DeletePartner waits for its saga's CreatePartner, retries
included), while different sagas' calls run side by side, at most
ALPES_MAX_CONCURRENT_CALLS at once; the rest wait their turn, none is dropped. The calls
waiting are `saga_alpes_calls_waiting` in /metrics, those running `saga_alpes_calls_running`.
`dispatch` and `lookup` return a future that is done at once while at most
BRIDGE_MAX_IN_FLIGHT calls wait, and otherwise once the backlog is back under it: a caller
that awaits it is held back (back-pressure); one that does not still has its call carried out.

Retries, each bounded by its policy in common/retry.py (`RETRY_<NAME>` to change them):
5xx answers and connection errors are retried within a call, at most PARTICIPANT_HTTP_ATTEMPTS
tries within the `participant-http` budget; an Avro command Pulsar does not take is sent
again within `participant-pulsar`; a lookup that gets no answer is asked again within
`partner-lookup` (the partner index asks again on the partner's next event). A call whose
budget is spent reports nothing (`saga_alpes_calls_given_up_total` counts it): the saga's
step deadline sends the command again (its next attempt), which is also what happens when a
worker dies in the middle of a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp

from bridges.pulsar_client import is_permanent
from bridges.pulsar_inbound import LINK
from common.retry import Waits, policy
from domain.messages import (
    Command,
    Destination,
    PartnerCreationFailed,
    PartnerDeleted,
    PartnerDeleteFailed,
)
from runtime.app import cfg
from runtime.metrics import METRICS
from streams.partner_saga import partner_routing, saga_events
from wire.alpes import encode_crear_partner
from wire.internal import PartnerRouted, RoutingNote, SagaEnvelope
from wire.routing import email_key

__all__ = ["ALPES", "AlpesCalls", "OrderedCalls"]

log = logging.getLogger(__name__)
_PARTNER_FIELDS = ("nombre", "email", "telefono", "direccion")


@dataclass
class _Job:
    name: str
    call: Callable[[], Awaitable[None]]
    tag: str | None = None  # a job with the tag of one still waiting in its queue is not added


class OrderedCalls:
    """Calls carried out in the background: one key's calls one at a time, in the order they
    were submitted; different keys' side by side, at most `max_running` at once. A key's
    calls wait in its queue; a key whose turn has not come waits in line for a free slot
    (a key that has more calls queued gives its slot to the next key in line after each
    call, so that one busy saga cannot hold a slot for ever). Nothing is dropped.

    `submit` returns a future, done at once while at most `max_waiting` calls wait (started
    calls do not count), and otherwise once the backlog is back under it. A call that raises
    is logged with its name; the next call of its key goes ahead."""

    def __init__(self, max_running: int, max_waiting: int, *, metric: str = "alpes_calls") -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("max_running must be at least 1 and max_waiting at least 0")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.metric = metric
        self.waiting = 0  # calls submitted and not started
        self._queues: dict[str, deque[_Job]] = {}  # keys with a call waiting or running
        self._line: deque[str] = deque()  # keys waiting for a slot, in turn
        self._runners: dict[str, asyncio.Task[None]] = {}  # key -> the task running its calls
        self._room: deque[asyncio.Future[None]] = deque()  # callers held back, in turn
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self._runners)

    @property
    def held_back(self) -> int:
        return sum(1 for f in self._room if not f.done())

    def submit(self, key: str, name: str, call: Callable[[], Awaitable[None]], *,
               tag: str | None = None) -> asyncio.Future[None]:
        """Queue `call` after every call of `key` submitted before it."""
        queue = self._queues.get(key)
        if tag is not None and queue and any(job.tag == tag for job in queue):
            return self._admission()  # the same call waits already: it will do
        job = _Job(name, call, tag)
        self.waiting += 1
        self._idle.clear()
        if queue is not None:  # running, or in line: its runner takes it in turn
            queue.append(job)
        else:
            self._queues[key] = deque((job,))
            if len(self._runners) < self.max_running:
                self._start(key)
            else:
                self._line.append(key)
        self._report()
        return self._admission()

    async def idle(self) -> None:
        """Until no call waits or runs."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel the running calls and forget the waiting ones (the worker stops: the sagas'
        deadlines send their commands again on the next owner)."""
        runners = list(self._runners.values())
        self._queues.clear()
        self._line.clear()
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._runners.clear()
        self.waiting = 0
        self._release()
        self._idle.set()
        self._report()

    def _admission(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.waiting <= self.max_waiting:
            fut.set_result(None)
        else:
            self._room.append(fut)
        return fut

    def _release(self) -> None:
        """Let held-back callers go until those left are no more than the calls over the limit."""
        while self._room and (len(self._room) > max(0, self.waiting - self.max_waiting)):
            fut = self._room.popleft()
            if not fut.done():
                fut.set_result(None)

    def _start(self, key: str) -> None:
        self._runners[key] = asyncio.get_running_loop().create_task(
            self._run(key), name=f"{self.metric} {key}")

    async def _run(self, key: str) -> None:
        queue = self._queues.get(key, deque())  # empty: closed before this task began
        stopped = False
        try:
            while queue:
                job = queue.popleft()
                self.waiting -= 1
                self._release()
                self._report()
                try:
                    await job.call()
                except asyncio.CancelledError:
                    stopped = True
                    raise
                except Exception as exc:
                    log.error("%s failed: %r", job.name, exc, exc_info=exc)
                if queue and self._line:  # others wait for a slot: take turns
                    self._line.append(key)
                    return
            self._queues.pop(key, None)
        finally:
            self._runners.pop(key, None)
            if not stopped:
                while self._line and len(self._runners) < self.max_running:
                    self._start(self._line.popleft())
                if not self._queues:
                    self._idle.set()
            self._report()

    def _report(self) -> None:
        METRICS.set(f"{self.metric}_waiting", self.waiting)
        METRICS.set(f"{self.metric}_running", len(self._runners))


async def _wait_within(waits: Waits) -> bool:
    """Wait the policy's next delay and return True, or return False at once when that wait
    would end past the policy's budget (the caller gives up)."""
    delay = waits.next_delay()
    if waits.elapsed + delay > waits.policy.budget_s:
        return False
    await asyncio.sleep(delay)
    return True


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
    def __init__(self, max_running: int = 32, max_waiting: int = 2000) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.calls = OrderedCalls(max_running, max_waiting)

    @staticmethod
    def handles(cmd: Command) -> bool:
        return cfg.participants == "alpes" and cmd.destination == Destination.INTEGRACIONES

    def dispatch(self, cmd: Command) -> asyncio.Future[None]:
        """Carry out `cmd` in the background, after its saga's earlier commands; its outcome
        comes back as an event. Await the result to be held back while too many calls wait."""
        if cmd.type == "CreatePartner":
            call = partial(self._create, cmd)
        elif cmd.type == "DeletePartner":
            call = partial(self._delete, cmd)
        else:
            log.error("alpes: no call for command %s of saga %s", cmd.type, cmd.saga_id)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self.calls.submit(f"saga:{cmd.saga_id}", f"alpes {cmd.type} of saga {cmd.saga_id}", call)

    def lookup(self, partner_id: str) -> asyncio.Future[None]:
        """Ask integraciones for the partner (at most one such request waits per partner)."""
        return self.calls.submit(f"lookup:{partner_id}", f"alpes lookup of partner {partner_id}",
                                 partial(self._lookup, partner_id), tag="lookup")

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
        carried out without our knowing (a 5xx, a timeout, a dropped connection). At most
        PARTICIPANT_HTTP_ATTEMPTS tries, waits and budget of the `participant-http` policy."""
        url = cfg.integraciones_api_url.rstrip("/") + path
        status: int | None = None
        answer: Any = None
        unsure = False
        waits = policy("participant-http").waits()
        for n in range(cfg.http_attempts):
            if n and not await _wait_within(waits):
                METRICS.inc("alpes_calls_given_up_total", call="http")
                log.warning("alpes: %s %s: retry budget of %.0fs spent after %d tries", method, url,
                            waits.policy.budget_s, n)
                break
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
        """The Avro command, sent again while Pulsar fails for a passing reason, within the
        `participant-pulsar` budget (then the saga's deadline gives up on the step in time)."""
        topic = cfg.pulsar_topic(cfg.alpes_comando_crear_partner_topic)
        payload = encode_crear_partner(cmd.data)
        waits = policy("participant-pulsar").waits()
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
            METRICS.inc("pulsar_send_failures_total")
            log.warning("alpes: command of saga %s not sent to %s: %r", cmd.saga_id, topic, err)
            if not await _wait_within(waits):
                METRICS.inc("alpes_calls_given_up_total", call="pulsar")
                log.error("alpes: command of saga %s not sent to %s within %.0fs; the step's deadline "
                          "sends it again", cmd.saga_id, topic, waits.policy.budget_s)
                return

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
        """Asked again while integraciones gives no usable answer, within the `partner-lookup`
        budget; then the partner stays parked until its next event asks again."""
        waits = policy("partner-lookup").waits()
        while True:
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
            if not await _wait_within(waits):
                METRICS.inc("alpes_calls_given_up_total", call="lookup")
                log.error("alpes: cannot look partner %s up at %s within %.0fs; its next event asks again",
                          partner_id, cfg.integraciones_api_url, waits.policy.budget_s)
                return


def _code(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("codigo") or body.get("error") or "")[:200]
    return ""


ALPES = AlpesCalls(cfg.alpes_max_concurrent_calls, cfg.bridge_max_in_flight)
