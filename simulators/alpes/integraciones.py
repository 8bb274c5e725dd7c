"""gestion-de-integraciones as it is: partners over HTTP, the comando-crear-partner consumer
(Avro), PartnerCreado and eventos-partners-eliminado (Avro)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from simulators.alpes.common import AlpesBehaviour, AlpesTopics, Publish, _now, log
from wire.alpes import (
    COMANDO_CREAR_PARTNER,
    EVENTO_PARTNER_CREADO,
    EVENTO_PARTNER_ELIMINADO,
    DecodeError,
    avro_decode,
    avro_encode,
)

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
