"""The Alpes participant services' own wire formats (issue #12), as they are on their main branch.

gestion-de-integraciones speaks Avro on Pulsar (pulsar-client's AvroSchema: fastavro's
schemaless binary encoding with the writer's schema, no header), gestion-de-alianzas and
compliance speak raw UTF-8 JSON. Every Avro field is a nullable union without a default.
This module only maps bytes to dicts and back, and checks what the orchestrator needs of
each message; it knows nothing of sagas.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
from fastavro.types import Schema

__all__ = [
    "COMANDO_CREAR_PARTNER",
    "EVENTO_PARTNER_CREADO",
    "EVENTO_PARTNER_ELIMINADO",
    "DecodeError",
    "avro_decode",
    "avro_encode",
    "json_decode",
    "json_encode",
]

_STR = ["null", "string"]

#: Topic `PartnerCreado`, published by integraciones after it created a partner.
EVENTO_PARTNER_CREADO: Schema = fastavro.parse_schema({
    "type": "record", "name": "EventoPartnerCreado",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "PartnerCreadoPayload",
        "fields": [{"name": "partner_id", "type": _STR}]}]}],
})

#: Topic `comando-crear-partner`, consumed by integraciones (it creates the partner, then
#: publishes PartnerCreado).
COMANDO_CREAR_PARTNER: Schema = fastavro.parse_schema({
    "type": "record", "name": "ComandoCrearPartner",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "CrearPartnerPayload",
        "fields": [{"name": n, "type": _STR} for n in ("nombre", "email", "telefono", "direccion")]}]}],
})

#: Topic `eventos-partners-eliminado`, published by integraciones after a (soft) delete.
EVENTO_PARTNER_ELIMINADO: Schema = fastavro.parse_schema({
    "type": "record", "name": "EventoPartnerEliminado",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "PartnerPayload",
        "fields": [{"name": n, "type": _STR} for n in
                   ("partner_id", "nombre", "email", "telefono", "direccion", "estado", "estado_kyc")]}]}],
})


class DecodeError(ValueError):
    """The bytes are not a message of the expected format: the reason, for a dead letter."""


def avro_encode(schema: Schema, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _name(schema: Schema) -> str:
    return str(schema.get("name", "record")) if isinstance(schema, dict) else "record"


def avro_decode(schema: Schema, payload: bytes) -> dict[str, Any]:
    """One record, which must use every byte (trailing bytes mean another schema)."""
    buf = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except Exception as exc:  # fastavro raises many types on garbage (EOFError, ValueError, ...)
        raise DecodeError(f"not an Avro {_name(schema)}: {type(exc).__name__}: {exc}"[:300]) from None
    if buf.tell() != len(payload):
        raise DecodeError(f"not an Avro {_name(schema)}: "
                          f"{len(payload) - buf.tell()} bytes left over after the record")
    if not isinstance(record, dict):
        raise DecodeError(f"not an Avro {_name(schema)}")
    return record


def json_decode(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not UTF-8 JSON: {exc}"[:300]) from None
    if not isinstance(value, dict):
        raise DecodeError(f"not a JSON object: {type(value).__name__}")
    return value


def json_encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")
