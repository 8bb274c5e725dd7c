"""Simulators of the real Alpes participant services, in their own wire formats (wire.alpes).

Unlike simulators.participants (this project's CloudEvents contract), these behave like the
services on the main branch of the Alpes project, quirks included:

- gestion-de-integraciones (Flask in reality; aiohttp here, default port 5001): partners over
  HTTP (`/api/v1/partners`), a `comando-crear-partner` consumer (Avro), and Avro events
  `PartnerCreado` (after every creation, published BEFORE the HTTP 201 is answered) and
  `eventos-partners-eliminado` (after a soft delete). It knows nothing of idempotency keys.
  Like the real service, its consumer and producers register its Avro schemas with Pulsar
  (`AlpesParticipants.schemas`): started after something opened `comando-crear-partner`
  without a schema, its consumer is refused (IncompatibleSchema) and `start()` raises, as the
  real service's consumer thread gives up.
- gestion-de-alianzas (FastAPI in reality; aiohttp here, default port 8001): consumes
  `PartnerCreado` itself, makes a contract for the partner and publishes it as raw UTF-8 JSON
  on `ContratoCreado`, with `"id": null` (as the real one does).
- compliance: consumes `ContratoCreado`, applies its rules and publishes raw JSON on
  `contrato-aprobado` or `contrato-rechazado`.

Faults are drawn per partner EMAIL with simulators.participants._share (see AlpesBehaviour),
so a test picks an email that triggers, or avoids, each fault with `email_with`.

    python -m simulators.alpes [--reject-contract 0.2] [--fail-delete 0.1] ...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import pulsar
import pulsar.asyncio as apulsar
from aiohttp import web

from common.security import pulsar_options_from_env
from simulators.participants import _share, serve_until_signalled
from wire.alpes import (
    COMANDO_CREAR_PARTNER,
    COMANDO_CREAR_PARTNER_DEFINITION,
    EVENTO_PARTNER_CREADO,
    EVENTO_PARTNER_CREADO_DEFINITION,
    EVENTO_PARTNER_ELIMINADO,
    EVENTO_PARTNER_ELIMINADO_DEFINITION,
    DecodeError,
    RawAvroSchema,
    avro_decode,
    avro_encode,
    avro_schema,
    json_decode,
    json_encode,
)

__all__ = [
    "ALPES_NS",
    "FAULTS",
    "Alianzas",
    "AlpesBehaviour",
    "AlpesParticipants",
    "AlpesTopics",
    "Compliance",
    "Integraciones",
    "Publish",
    "contrato_id_for",
    "email_with",
    "main",
    "make_contract",
    "review",
]

log = logging.getLogger("simulators.alpes")

#: Namespace of the uuid5 ids made up here (compliance's contrato_id when the contract has none).
ALPES_NS = uuid.UUID("5d0c8f8e-3b0a-4c47-9a55-8f2b6c1e7a40")

#: Publishes one message: (full topic name, payload). Pulsar in AlpesParticipants; a fake in tests.
Publish = Callable[[str, bytes], Awaitable[None]]

#: AlpesBehaviour field -> salt of its share. `chooses` and `email_with` accept either name.
FAULTS: dict[str, str] = {
    "fail_post_after_save": "fail-post",
    "fail_delete": "fail-delete",
    "reject_contract": "reject-contract",
    "no_contract": "no-contract",
}
_FIELD_OF_SALT = {salt: name for name, salt in FAULTS.items()}

# gestion-de-alianzas' enums (TipoContrato, EstadoContrato: lower-case values) and compliance's lists.
TIPOS_CONTRATO = ("CPA", "CPL", "CPC", "revshare", "fijo")
ESTADOS_CONTRATO = ("activo", "inactivo", "vencido", "cancelado", "rechazado")
CONDICIONES = ("Condición A", "Condición B", "Condición C", "Condición D")
MONEDAS_CONTRATO = ("COP", "USD")  # what the simulated alianzas picks from (all pass compliance)
MONTO_MAXIMO = 50000
MONTO_RECHAZO = 75000.0  # the monto of a contract drawn by `reject_contract`
MONEDAS_PERMITIDAS = ("USD", "EUR", "COP", "MXN")
ESTADOS_VALIDOS = ("ACTIVO", "PENDIENTE", "SUSPENDIDO")
VALIDACIONES = ("monto_y_limites", "moneda_y_jurisdiccion", "partner_y_reputacion", "estado_y_vigencia")


def _topic(name: str) -> str:
    return name if "://" in name else f"persistent://public/default/{name}"


def _now() -> datetime:
    """Naive UTC, as the real services' datetime.utcnow()."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class AlpesBehaviour:
    """Faults, each a share of partners drawn by a stable hash of the partner's email (so a
    run is reproducible, and `email_with` finds an email that has, or has not, a fault)."""

    # Share of emails whose first POST saves the partner, then answers 500. Every later POST
    # of that email gets 409 (the partner exists), as with the real service.
    fail_post_after_save: float = 0.0
    # Whether such a failed POST still published PartnerCreado before its 500 (the partner
    # exists, so alianzas then makes a contract); False: no event at all for that partner.
    publish_on_failed_post: bool = True
    fail_delete: float = 0.0  # share of emails whose every DELETE answers 500, deleting nothing
    reject_contract: float = 0.0  # share of emails whose contract has monto 75000 (compliance rejects)
    no_contract: float = 0.0  # share of emails for which alianzas never publishes a contract
    latency_s: float = 0.0  # before each HTTP answer and each message handled

    def chooses(self, email: str, salt_name: str) -> bool:
        """Whether the fault `salt_name` ("fail-post", "fail-delete", "reject-contract",
        "no-contract", or the field's name) is drawn for this email."""
        name = _FIELD_OF_SALT.get(salt_name, salt_name)
        if name not in FAULTS:
            raise ValueError(f"unknown fault {salt_name!r}; one of {sorted(FAULTS.values())}")
        share: float = getattr(self, name)
        return _share(email, FAULTS[name]) < share


def email_with(behaviour: AlpesBehaviour, fault: str, want: bool = True, prefix: str = "p",
               avoid: Iterable[str] = (), limit: int = 100_000) -> str:
    """The first `f"{prefix}-{n}@example.com"` that has (want=True) or has not the fault, and
    none of the faults in `avoid`. Raises ValueError if none is found in `limit` tries (e.g.
    want=True for a share of 0)."""
    avoided = list(avoid)
    for n in range(limit):
        email = f"{prefix}-{n}@example.com"
        if behaviour.chooses(email, fault) == want and not any(behaviour.chooses(email, a) for a in avoided):
            return email
    raise ValueError(f"no email with {fault}={want} (avoiding {avoided}) among {limit} tries")


@dataclass
class AlpesTopics:
    """The Alpes topic names; each becomes `persistent://public/default/NAME` unless given in full."""

    partner_creado: str = "PartnerCreado"
    comando_crear_partner: str = "comando-crear-partner"
    partner_eliminado: str = "eventos-partners-eliminado"
    contrato_creado: str = "ContratoCreado"
    contrato_aprobado: str = "contrato-aprobado"
    contrato_rechazado: str = "contrato-rechazado"

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _topic(getattr(self, f.name)))

    @classmethod
    def prefixed(cls, prefix: str) -> AlpesTopics:
        """`{prefix}-{default name}` for every topic: a test's own topics (the prefix may be a
        bare name, e.g. f"alpes-{uuid4()}", or a full persistent://tenant/ns/name)."""
        return cls(**{f.name: f"{prefix}-{f.default}" for f in fields(cls)})


# --- gestion-de-integraciones ------------------------------------------------------------------


class Integraciones:
    """gestion-de-integraciones: partners over HTTP and from `comando-crear-partner`.

    - POST /api/v1/partners {nombre*, email*, telefono?, direccion?}: 201 {"mensaje", "partner"};
      400 DATOS_INVALIDOS when the body is not a JSON object or nombre/email are missing or
      empty (the simulator also wants strings, and telefono/direccion strings or null);
      409 EMAIL_EXISTENTE when ANY partner has that email, deleted ones included (the real
      service looks the email up among all partners: a deleted partner's email is never free
      again); 500 ERROR_INTERNO after the partner was saved, when publishing PartnerCreado
      fails or `fail_post_after_save` draws the email. PartnerCreado is published before the
      201 is answered. An Idempotency-Key header is ignored.
    - DELETE /api/v1/partners/{id}: soft delete (estado ELIMINADO), 200 {"mensaje",
      "partner_id"}; 404 PARTNER_NO_ENCONTRADO; 410 PARTNER_YA_ELIMINADO; 500 ERROR_ELIMINACION
      for every DELETE of a partner whose email `fail_delete` draws (nothing deleted, nothing
      published); 500 ERROR_INTERNO when publishing the event fails (the delete is kept).
      Publishes eventos-partners-eliminado with, like the real mapper, telefono, direccion
      and estado_kyc as "" and estado "ELIMINADO".
    - GET /api/v1/partners {"partners": [every partner], "total": n}, GET /api/v1/partners/{id}
      {"partner": {...}} (both wrapped, as the real service answers), GET /health.
    - comando-crear-partner: creates the partner as a POST would (no fault knob), then
      publishes PartnerCreado; invalid data, a taken email or undecodable bytes are logged
      and acked, nothing published. A failed publish raises (the message is redelivered, and
      then meets the taken email: the event is lost, as with the real service).
    """

    def __init__(self, publish: Publish, behaviour: AlpesBehaviour | None = None,
                 topics: AlpesTopics | None = None, counts: Counter[str] | None = None) -> None:
        self.publish = publish
        self.behaviour = behaviour or AlpesBehaviour()
        self.topics = topics or AlpesTopics()
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.partners: dict[str, dict[str, Any]] = {}

    def by_email(self, email: str) -> dict[str, Any] | None:
        """The partner (deleted or not) with this email: emails are unique among all partners."""
        return next((p for p in self.partners.values() if p["email"] == email), None)

    def live_partners(self) -> set[str]:
        return {pid for pid, p in self.partners.items() if p["estado"] != "ELIMINADO"}

    @staticmethod
    def _fields(data: object) -> dict[str, str | None] | None:
        """The partner's fields, or None when the data is invalid."""
        if not isinstance(data, dict):
            return None
        out: dict[str, str | None] = {}
        for name in ("nombre", "email"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                return None
            out[name] = value
        for name in ("telefono", "direccion"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                return None
            out[name] = value
        return out

    def _save(self, f: dict[str, str | None]) -> dict[str, Any]:
        partner: dict[str, Any] = {
            "id": str(uuid.uuid4()), "nombre": f["nombre"], "email": f["email"], "telefono": f["telefono"],
            "direccion": f["direccion"], "estado": "ACTIVO", "estado_kyc": "PENDIENTE",
            "fecha_creacion": _now().isoformat()}
        self.partners[partner["id"]] = partner
        self.counts["partners_created"] += 1
        return partner

    async def _publish_creado(self, partner_id: str) -> None:
        await self.publish(self.topics.partner_creado,
                           avro_encode(EVENTO_PARTNER_CREADO, {"data": {"partner_id": partner_id}}))
        self.counts["partner_creado_published"] += 1

    async def _pause(self) -> None:
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)

    async def create(self, body: object) -> tuple[int, dict[str, Any]]:
        """POST /api/v1/partners on a parsed body (None when it was not JSON): (status, answer)."""
        self.counts["posts"] += 1
        f = self._fields(body)
        if f is None:
            self.counts["posts_invalid"] += 1
            log.info("integraciones: POST rejected (400): invalid data")
            return 400, {"error": "Nombre y email son requeridos", "codigo": "DATOS_INVALIDOS"}
        email = str(f["email"])
        if self.by_email(email) is not None:
            self.counts["conflicts"] += 1
            log.info("integraciones: POST %s rejected (409): email taken", email)
            return 409, {"error": f"Ya existe un partner con el email {email}", "codigo": "EMAIL_EXISTENTE"}
        partner = self._save(f)
        fail = self.behaviour.chooses(email, "fail-post")
        if not fail or self.behaviour.publish_on_failed_post:
            try:
                await self._publish_creado(partner["id"])
            except Exception as exc:
                self.counts["publish_failed"] += 1
                log.warning("integraciones: partner %s saved, PartnerCreado not published (%s): 500",
                            partner["id"], exc)
                return 500, {"error": "Error interno del servidor", "codigo": "ERROR_INTERNO"}
        if fail:
            self.counts["posts_failed_after_save"] += 1
            log.info("integraciones: partner %s (%s) saved, answering 500 (fault)", partner["id"], email)
            return 500, {"error": "Error interno del servidor", "codigo": "ERROR_INTERNO"}
        log.info("integraciones: partner %s (%s) created over HTTP", partner["id"], email)
        return 201, {"mensaje": "Partner creado exitosamente", "partner": dict(partner)}

    async def delete(self, partner_id: str) -> tuple[int, dict[str, Any]]:
        """DELETE /api/v1/partners/{id}: (status, answer)."""
        partner = self.partners.get(partner_id)
        if partner is None:
            self.counts["deletes_not_found"] += 1
            log.info("integraciones: DELETE %s: 404", partner_id)
            return 404, {"error": f"Partner con ID {partner_id} no encontrado",
                         "codigo": "PARTNER_NO_ENCONTRADO"}
        if partner["estado"] == "ELIMINADO":
            self.counts["deletes_gone"] += 1
            log.info("integraciones: DELETE %s: 410 (already deleted)", partner_id)
            return 410, {"error": f"No se puede operar con el partner {partner_id} porque está eliminado",
                         "codigo": "PARTNER_YA_ELIMINADO"}
        if self.behaviour.chooses(partner["email"], "fail-delete"):
            self.counts["deletes_failed"] += 1
            log.info("integraciones: DELETE %s: 500 (fault), nothing deleted", partner_id)
            return 500, {"error": "No se pudo eliminar el partner", "codigo": "ERROR_ELIMINACION"}
        partner["estado"] = "ELIMINADO"
        self.counts["deletes"] += 1
        try:
            await self.publish(self.topics.partner_eliminado, avro_encode(EVENTO_PARTNER_ELIMINADO, {"data": {
                "partner_id": partner_id, "nombre": partner["nombre"], "email": partner["email"],
                "telefono": "", "direccion": "", "estado": "ELIMINADO", "estado_kyc": ""}}))
        except Exception as exc:
            self.counts["publish_failed"] += 1
            log.warning("integraciones: partner %s deleted, event not published (%s): 500", partner_id, exc)
            return 500, {"error": "Error interno del servidor", "codigo": "ERROR_INTERNO"}
        log.info("integraciones: partner %s deleted", partner_id)
        return 200, {"mensaje": "Partner eliminado exitosamente", "partner_id": partner_id}

    async def on_command(self, payload: bytes) -> None:
        """One `comando-crear-partner` message (Avro ComandoCrearPartner)."""
        await self._pause()
        self.counts["commands"] += 1
        try:
            record = avro_decode(COMANDO_CREAR_PARTNER, payload)
        except DecodeError as exc:
            self.counts["garbage_commands"] += 1
            log.warning("integraciones: undecodable command dropped: %s", exc)
            return
        f = self._fields(record.get("data"))
        if f is None:
            self.counts["commands_invalid"] += 1
            log.warning("integraciones: command with invalid data dropped: %s", record)
            return
        email = str(f["email"])
        if self.by_email(email) is not None:
            self.counts["conflicts"] += 1
            log.warning("integraciones: command for %s dropped: email taken", email)
            return
        partner = self._save(f)
        log.info("integraciones: partner %s (%s) created from a command", partner["id"], email)
        await self._publish_creado(partner["id"])

    # HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/partners", self._http_post)
        app.router.add_get("/api/v1/partners", self._http_list)
        app.router.add_get("/api/v1/partners/{partner_id}", self._http_get)
        app.router.add_delete("/api/v1/partners/{partner_id}", self._http_delete)
        app.router.add_get("/health", _http_health)
        return app

    async def _http_post(self, request: web.Request) -> web.Response:
        await self._pause()
        try:
            body: object = json.loads(await request.read())
        except ValueError:
            body = None
        status, answer = await self.create(body)
        return web.json_response(answer, status=status)

    async def _http_delete(self, request: web.Request) -> web.Response:
        await self._pause()
        status, answer = await self.delete(request.match_info["partner_id"])
        return web.json_response(answer, status=status)

    async def _http_list(self, request: web.Request) -> web.Response:
        await self._pause()
        # As the real service answers (its main branch): wrapped, with a count.
        return web.json_response({"partners": [dict(p) for p in self.partners.values()],
                                  "total": len(self.partners)})

    async def _http_get(self, request: web.Request) -> web.Response:
        await self._pause()
        partner_id = request.match_info["partner_id"]
        partner = self.partners.get(partner_id)
        if partner is None:
            return web.json_response({"error": f"Partner con ID {partner_id} no encontrado",
                                      "codigo": "PARTNER_NO_ENCONTRADO"}, status=404)
        return web.json_response({"partner": dict(partner)})


async def _http_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


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


# --- compliance --------------------------------------------------------------------------------


def contrato_id_for(partner_id: str) -> str:
    """compliance's contrato_id for a contract whose id is null: a uuid5 of the partner id."""
    return str(uuid.uuid5(ALPES_NS, f"contrato:{partner_id}"))


def _validacion_fallida(causa: str) -> str:
    """The real service names the failed rule from its message, in this order."""
    lower = causa.lower()
    if "monto" in lower or "límite" in lower:
        return "MONTO_INVALIDO"
    if "moneda" in lower:
        return "MONEDA_NO_PERMITIDA"
    if "partner" in lower:
        return "PARTNER_INVALIDO"
    if "estado" in lower:
        return "ESTADO_INVALIDO"
    return "VALIDACION_GENERAL"


def review(contract: dict[str, Any], now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    """compliance's verdict on a ContratoCreado: (approved, the JSON to publish).

    Rules, in the real order, the first broken one rejecting: monto > 50000 (MONTO_INVALIDO);
    moneda not in USD, EUR, COP, MXN (MONEDA_NO_PERMITIDA; the case is NOT folded);
    partner_id shorter than 10 characters (PARTNER_INVALIDO); estado.upper() not in ACTIVO,
    PENDIENTE, SUSPENDIDO (ESTADO_INVALIDO; the case IS folded, so alianzas' "activo"
    passes). Missing fields default as in the real consumer (monto 0, moneda "USD", estado
    "PENDIENTE"); a value the rules cannot compare (monto null or a string, estado not a
    string) rejects with ERROR_TECNICO. contrato_id is the contract's id when not null, else
    contrato_id_for(partner_id); tipo defaults to "STANDARD"; estado is echoed as received.
    """
    now = now or datetime.now()
    partner_id = contract.get("partner_id")
    contrato_id = contract.get("id")
    if contrato_id is None:
        contrato_id = contrato_id_for(str(partner_id))
    monto = contract.get("monto", 0)
    moneda = contract.get("moneda", "USD")
    estado = contract.get("estado", "PENDIENTE")
    out: dict[str, Any] = {"partner_id": partner_id, "contrato_id": contrato_id, "monto": monto,
                           "moneda": moneda, "estado": estado, "tipo": contract.get("tipo") or "STANDARD"}
    try:
        if monto > MONTO_MAXIMO:
            raise ValueError(f"Monto {monto} excede límite máximo de 50,000")
        if moneda not in MONEDAS_PERMITIDAS:
            raise ValueError(f"Moneda {moneda} no está en la lista de permitidas")
        if not partner_id or len(partner_id) < 10:
            raise ValueError("Partner ID inválido")
        if estado.upper() not in ESTADOS_VALIDOS:
            raise ValueError(f"Estado {estado} no válido")
    except ValueError as exc:
        causa, fallida = str(exc), _validacion_fallida(str(exc))
    except Exception as exc:
        causa, fallida = f"Error técnico en procesamiento: {exc}", "ERROR_TECNICO"
    else:
        return True, {**out, "fecha_aprobacion": now.isoformat(), "validaciones_pasadas": list(VALIDACIONES)}
    return False, {**out, "fecha_rechazo": now.isoformat(), "causa_rechazo": causa,
                   "validacion_fallida": fallida}


class Compliance:
    """compliance: approves or rejects every contract on `ContratoCreado` (see review), on
    `contrato-aprobado` / `contrato-rechazado` (raw JSON). Bytes that are not a JSON object,
    or an object without a partner_id string, are logged and acked, nothing published."""

    def __init__(self, publish: Publish, topics: AlpesTopics | None = None,
                 counts: Counter[str] | None = None, latency_s: float = 0.0) -> None:
        self.publish = publish
        self.topics = topics or AlpesTopics()
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.latency_s = latency_s
        self.approved: list[dict[str, Any]] = []  # what was published, in order
        self.rejected: list[dict[str, Any]] = []

    async def on_contrato_creado(self, payload: bytes) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            contract = json_decode(payload)
        except DecodeError as exc:
            self.counts["garbage_contrato_creado"] += 1
            log.warning("compliance: undecodable ContratoCreado dropped: %s", exc)
            return
        partner_id = contract.get("partner_id")
        if not isinstance(partner_id, str) or not partner_id:
            self.counts["garbage_contrato_creado"] += 1
            log.warning("compliance: ContratoCreado without partner_id dropped: %s", contract)
            return
        approved, body = review(contract)
        topic = self.topics.contrato_aprobado if approved else self.topics.contrato_rechazado
        await self.publish(topic, json_encode(body))
        if approved:
            self.counts["approvals"] += 1
            self.approved.append(body)
            log.info("compliance: contract of partner %s approved", partner_id)
        else:
            self.counts["rejections"] += 1
            self.rejected.append(body)
            log.info("compliance: contract of partner %s rejected: %s", partner_id, body["causa_rechazo"])


# --- the three together, on Pulsar -------------------------------------------------------------


class AlpesParticipants:
    """gestion-de-integraciones, gestion-de-alianzas and compliance in one process.

    `start()`/`stop()`, or `async with`. HTTP servers on `host`, ports 0 = free ones (see
    `integraciones_url`, `alianzas_url`). With `publish` given, no Pulsar client is made at
    all: messages go to that callable and nothing is consumed (feed the services' `on_*`
    methods yourself): the mode of the unit tests.

    Subscriptions are Shared, one fixed name per role: f"{subscription}-integraciones",
    "-alianzas", "-compliance". A restarted simulator thus resumes the backlog its previous
    run left (messages published while it was down are handled, as by the real services),
    and a test keeps instances apart with its own topics (AlpesTopics.prefixed), not with
    subscription names. Two instances on the same topics share the messages, but not their
    stores: the alianzas of one does not know the emails of the other's partners (it then
    draws faults from the partner id). New subscriptions start at the earliest message.
    A Pulsar outage is waited out (receive is retried; a message whose handling fails, e.g.
    its publish, is negatively acknowledged and redelivered).
    """

    def __init__(self, broker_url: str = "pulsar://localhost:6650", behaviour: AlpesBehaviour | None = None,
                 topics: AlpesTopics | None = None, *, host: str = "127.0.0.1", integraciones_port: int = 0,
                 alianzas_port: int = 0, subscription: str = "alpes-sim",
                 publish: Publish | None = None) -> None:
        self.broker_url = broker_url
        self.behaviour = behaviour or AlpesBehaviour()
        self.topics = topics or AlpesTopics()
        self.host = host
        self.subscription = subscription
        self.counts: Counter[str] = Counter()
        self._offline = publish is not None
        pub: Publish = publish or self._pulsar_publish
        self.integraciones = Integraciones(pub, self.behaviour, self.topics, self.counts)
        self.alianzas = Alianzas(pub, self.behaviour, self.topics, self.counts, email_of=self._email_of)
        self.compliance = Compliance(pub, self.topics, self.counts, latency_s=self.behaviour.latency_s)
        self._ports = {"integraciones": integraciones_port, "alianzas": alianzas_port}
        self._runners: list[web.AppRunner] = []
        self._client: apulsar.Client | None = None
        self._producers: dict[str, apulsar.Producer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._started = False

    @property
    def partners(self) -> dict[str, dict[str, Any]]:
        return self.integraciones.partners

    def live_partners(self) -> set[str]:
        return self.integraciones.live_partners()

    def by_email(self, email: str) -> dict[str, Any] | None:
        return self.integraciones.by_email(email)

    @property
    def integraciones_url(self) -> str:
        return self._url("integraciones")

    @property
    def alianzas_url(self) -> str:
        return self._url("alianzas")

    def _url(self, role: str) -> str:
        if not self._started:
            raise RuntimeError("AlpesParticipants not started")
        return f"http://{self.host}:{self._ports[role]}"

    def _email_of(self, partner_id: str) -> str | None:
        partner = self.integraciones.partners.get(partner_id)
        return None if partner is None else str(partner["email"])

    async def __aenter__(self) -> AlpesParticipants:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            if not self._offline:
                await self._start_pulsar()
            for role, app in (("integraciones", self.integraciones.app()), ("alianzas", self.alianzas.app())):
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, self.host, self._ports[role]).start()
                self._ports[role] = int(runner.addresses[0][1])
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info("alpes simulators up: integraciones %s, alianzas %s, %s", self.integraciones_url,
                 self.alianzas_url, "offline" if self._offline else self.broker_url)

    async def _start_pulsar(self) -> None:
        """Producers and consumers with the schemas the real services give them (SCHEMAS):
        integraciones' Avro topics with its Avro definitions (its consumer of
        `comando-crear-partner` too), alianzas' and compliance's JSON topics with none."""
        self._client = apulsar.Client(self.broker_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                                      **pulsar_options_from_env())
        t = self.topics
        schemas = self.schemas()
        for topic in (t.partner_creado, t.partner_eliminado, t.contrato_creado, t.contrato_aprobado,
                      t.contrato_rechazado):
            self._producers[topic] = await self._client.create_producer(
                topic, schema=schemas.get(topic), block_if_queue_full=True)
        roles: list[tuple[str, str, Callable[[bytes], Awaitable[None]]]] = [
            (t.comando_crear_partner, "integraciones", self.integraciones.on_command),
            (t.partner_creado, "alianzas", self.alianzas.on_partner_creado),
            (t.contrato_creado, "compliance", self.compliance.on_contrato_creado)]
        for topic, role, handler in roles:
            consumer = await self._client.subscribe(
                topic, f"{self.subscription}-{role}", consumer_type=pulsar.ConsumerType.Shared,
                schema=schemas.get(topic) if role == "integraciones" else None,
                initial_position=pulsar.InitialPosition.Earliest, negative_ack_redelivery_delay_ms=500)
            self._tasks.append(asyncio.ensure_future(self._serve(consumer, handler)))

    def schemas(self) -> dict[str, RawAvroSchema]:
        """Topic -> the Avro schema gestion-de-integraciones registers for it, as its producers
        (`PartnerCreado`, `eventos-partners-eliminado`) and its consumer (`comando-crear-partner`)
        do with pulsar-client's AvroSchema of its Record classes. alianzas and compliance use
        none: their consumers and producers are schemaless (BYTES)."""
        return {self.topics.partner_creado: avro_schema(EVENTO_PARTNER_CREADO_DEFINITION),
                self.topics.partner_eliminado: avro_schema(EVENTO_PARTNER_ELIMINADO_DEFINITION),
                self.topics.comando_crear_partner: avro_schema(COMANDO_CREAR_PARTNER_DEFINITION)}

    async def stop(self) -> None:
        self._started = False
        tasks = [*self._tasks, *self._pending]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._client is not None:
            try:
                await self._client.close()
            except (pulsar.PulsarException, apulsar.PulsarException) as exc:
                log.warning("alpes simulators: closing the Pulsar client failed (%s)", exc)
            self._client = None
            self._producers.clear()

    async def _pulsar_publish(self, topic: str, payload: bytes) -> None:
        await self._producers[topic].send(payload)

    async def _serve(self, consumer: apulsar.Consumer, handler: Callable[[bytes], Awaitable[None]]) -> None:
        while True:
            try:  # Pulsar may be down for a while: wait for the client to reconnect
                msg = await consumer.receive()
            except (pulsar.PulsarException, apulsar.PulsarException) as exc:
                log.warning("alpes simulators: receive failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            t = asyncio.ensure_future(self._handle(consumer, msg, handler))
            self._pending.add(t)
            t.add_done_callback(self._pending.discard)

    async def _handle(self, consumer: apulsar.Consumer, msg: pulsar.Message,
                      handler: Callable[[bytes], Awaitable[None]]) -> None:
        try:
            await handler(msg.data())
        except Exception:
            log.exception("alpes simulators: failed on %s; will be redelivered", msg.message_id())
            try:
                await consumer.negative_acknowledge(msg)
            except (pulsar.PulsarException, apulsar.PulsarException):
                pass
            return
        try:
            await consumer.acknowledge(msg)
        except (pulsar.PulsarException, apulsar.PulsarException):
            pass  # redelivered once Pulsar is back, and handled again


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--broker-url", default=env("BROKER_URL", "pulsar://localhost:6650"))
    p.add_argument("--host", default=env("SIM_HOST", "127.0.0.1"))
    p.add_argument("--integraciones-port", type=int, default=int(env("SIM_INTEGRACIONES_PORT", "5001")))
    p.add_argument("--alianzas-port", type=int, default=int(env("SIM_ALIANZAS_PORT", "8001")))
    p.add_argument("--topic-prefix", default=env("SIM_TOPIC_PREFIX", ""),
                   help="prefix every topic name (default: the real names)")
    p.add_argument("--subscription", default=env("SIM_SUBSCRIPTION", "alpes-sim"))
    p.add_argument("--fail-post-after-save", type=float,
                   default=float(env("SIM_FAIL_POST_AFTER_SAVE", "0.0")))
    p.add_argument("--failed-post-unpublished", action="store_true",
                   default=env("SIM_FAILED_POST_UNPUBLISHED", "") == "1",
                   help="a POST failing after save publishes no PartnerCreado")
    p.add_argument("--fail-delete", type=float, default=float(env("SIM_FAIL_DELETE", "0.0")))
    p.add_argument("--reject-contract", type=float, default=float(env("SIM_REJECT_CONTRACT", "0.2")))
    p.add_argument("--no-contract", type=float, default=float(env("SIM_NO_CONTRACT", "0.0")))
    p.add_argument("--latency", type=float, default=float(env("SIM_LATENCY_S", "0.05")))
    return p


async def _run(args: argparse.Namespace) -> None:
    behaviour = AlpesBehaviour(
        fail_post_after_save=args.fail_post_after_save,
        publish_on_failed_post=not args.failed_post_unpublished,
        fail_delete=args.fail_delete, reject_contract=args.reject_contract, no_contract=args.no_contract,
        latency_s=args.latency)
    topics = AlpesTopics.prefixed(args.topic_prefix) if args.topic_prefix else AlpesTopics()
    sims = AlpesParticipants(args.broker_url, behaviour, topics, host=args.host,
                             integraciones_port=args.integraciones_port, alianzas_port=args.alianzas_port,
                             subscription=args.subscription)
    await sims.start()
    log.info("behaviour: %s", behaviour)
    await serve_until_signalled(sims, "alpes simulators")
    log.info("alpes simulators stopped: %s", dict(sims.counts))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_run(_parser().parse_args()))


if __name__ == "__main__":
    main()
