"""gestion-de-alianzas as it is: consumes PartnerCreado, makes a contract for the partner and
publishes it as raw JSON on ContratoCreado (`"id": null`)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from simulators.alpes.common import (
    CONDICIONES,
    ESTADOS_CONTRATO,
    MONEDAS_CONTRATO,
    MONTO_RECHAZO,
    TIPOS_CONTRATO,
    AlpesBehaviour,
    AlpesTopics,
    Publish,
    _now,
    log,
)
from simulators.alpes.integraciones import _http_health
from simulators.participants import _share
from wire.alpes import (
    EVENTO_PARTNER_CREADO,
    DecodeError,
    avro_decode,
    json_encode,
)

# --- gestion-de-alianzas -----------------------------------------------------------------------


def make_contract(partner_id: str, behaviour: AlpesBehaviour, key: str | None = None,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """The contract alianzas publishes for a partner, or None when it stays silent
    (`no_contract`). `key` (the partner's email; the partner id when unknown) draws the
    faults; the other choices are drawn from the partner id. Like the real service: `id` is
    null, `estado` lower-case, dates ISO (fecha_fin null for half the partners), monto in
    [100, 10000], except 75000 when `reject_contract` draws the key."""
    key = key or partner_id
    if behaviour.chooses(key, "no-contract"):
        return None
    now = now or _now()

    def pick(options: tuple[str, ...], salt: str) -> str:
        return options[int(_share(partner_id, salt) * len(options))]

    fecha_fin = None if _share(partner_id, "fecha-fin") < 0.5 else now.date()  # sic: today, or null
    if behaviour.chooses(key, "reject-contract"):
        monto = MONTO_RECHAZO
    else:
        monto = round(100 + 9900 * _share(partner_id, "monto"), 2)
    return {
        "id": None, "partner_id": partner_id, "tipo": pick(TIPOS_CONTRATO, "tipo"),
        "fecha_inicio": now.date().isoformat(),
        "fecha_fin": None if fecha_fin is None else fecha_fin.isoformat(),
        "monto": monto, "moneda": pick(MONEDAS_CONTRATO, "moneda"),
        "condiciones": pick(CONDICIONES, "condiciones"),
        "estado": "activo", "fecha_creacion": now.isoformat(), "fecha_actualizacion": None,
    }


class Alianzas:
    """gestion-de-alianzas: a contract for every partner announced on `PartnerCreado`.

    The PartnerCreado bytes are Avro-decoded (EventoPartnerCreado); undecodable bytes or a
    record without partner_id are logged and acked, nothing published. The contract (see
    make_contract) goes out as raw UTF-8 JSON on `ContratoCreado`. Faults are drawn from the
    partner's email, read through `email_of` (AlpesParticipants reads its integraciones'
    store); for a partner it does not know, from the partner id. Like the real service it
    keeps no record of what it already handled: a redelivered PartnerCreado makes another
    contract (the same one, for the same partner).

    HTTP: POST /posts/ stores a contract and answers 201 {"id": <int>}, publishing nothing
    (a body that is not an object, or lacks partner_id, a valid tipo or fecha_inicio, gets
    400 {"msg": ...}, as the real exception handler answers validation errors);
    GET /posts/ping ("pong") and GET /health.
    """

    def __init__(self, publish: Publish, behaviour: AlpesBehaviour | None = None,
                 topics: AlpesTopics | None = None, counts: Counter[str] | None = None,
                 email_of: Callable[[str], str | None] | None = None) -> None:
        self.publish = publish
        self.behaviour = behaviour or AlpesBehaviour()
        self.topics = topics or AlpesTopics()
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.email_of: Callable[[str], str | None] = email_of or (lambda _pid: None)
        #: every contract stored (made from PartnerCreado or POSTed), by its int id
        self.contracts: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def contracts_for(self, partner_id: str) -> list[dict[str, Any]]:
        return [c for c in self.contracts.values() if c.get("partner_id") == partner_id]

    async def on_partner_creado(self, payload: bytes) -> None:
        """One `PartnerCreado` message (Avro EventoPartnerCreado)."""
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        try:
            record = avro_decode(EVENTO_PARTNER_CREADO, payload)
        except DecodeError as exc:
            self.counts["garbage_partner_creado"] += 1
            log.warning("alianzas: undecodable PartnerCreado dropped: %s", exc)
            return
        data = record.get("data")
        partner_id = data.get("partner_id") if isinstance(data, dict) else None
        if not partner_id:
            self.counts["garbage_partner_creado"] += 1
            log.warning("alianzas: PartnerCreado without partner_id dropped: %s", record)
            return
        email = self.email_of(partner_id)
        contract = make_contract(partner_id, self.behaviour, key=email or partner_id)
        if contract is None:
            self.counts["contracts_withheld"] += 1
            log.info("alianzas: no contract for partner %s (%s) (fault)", partner_id, email)
            return
        n = next(self._ids)
        self.contracts[n] = {**contract, "id": n}
        await self.publish(self.topics.contrato_creado, json_encode(contract))
        self.counts["contracts"] += 1
        log.info("alianzas: contract %s for partner %s published (monto %s %s)",
                 n, partner_id, contract["monto"], contract["moneda"])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/posts/", self._http_post)
        app.router.add_get("/posts/ping", self._http_ping)
        app.router.add_get("/health", _http_health)
        return app

    async def _http_post(self, request: web.Request) -> web.Response:
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        try:
            body: object = json.loads(await request.read())
        except ValueError:
            body = None
        problem = _contract_problem(body)
        if problem is not None or not isinstance(body, dict):
            return web.json_response({"msg": problem or "invalid body"}, status=400)
        n = next(self._ids)
        self.contracts[n] = {**body, "id": n}
        self.counts["contracts_posted"] += 1
        log.info("alianzas: contract %s stored over HTTP for partner %s", n, body.get("partner_id"))
        return web.json_response({"id": n}, status=201)

    async def _http_ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")


def _contract_problem(body: object) -> str | None:
    """What FastAPI's validation of the Contrato model would say of a POSTed body, in short."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary or object to extract fields from"
    if not isinstance(body.get("partner_id"), str):
        return "partner_id: Field required (a string)"
    if body.get("tipo") not in TIPOS_CONTRATO:
        return f"tipo: Input should be one of {', '.join(TIPOS_CONTRATO)}"
    if not isinstance(body.get("fecha_inicio"), str):
        return "fecha_inicio: Field required (a date)"
    if "estado" in body and body["estado"] not in ESTADOS_CONTRATO:
        return f"estado: Input should be one of {', '.join(ESTADOS_CONTRATO)}"
    return None
