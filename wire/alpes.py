"""The Alpes participant services' own wire formats (issue #12), as they are on their main branch.

gestion-de-integraciones speaks Avro on Pulsar (pulsar-client's AvroSchema: fastavro's
schemaless binary encoding with the writer's schema, no header), gestion-de-alianzas and
compliance speak raw UTF-8 JSON. Every Avro field is a nullable union without a default.
The services register their Avro schemas with Pulsar (`*_DEFINITION` here, the same JSON).
While a topic has no schema and anything is attached to it, Pulsar refuses a consumer with an
Avro schema (IncompatibleSchema): whoever produces to one of these topics registers the
service's definition (`avro_schema`, in bridges/pulsar_inbound.LINK); a consumer without a
schema, as the orchestrator's, is accepted whatever the topic's schema.
This module only maps bytes to dicts and back, and checks what the orchestrator needs of
each message; it knows nothing of sagas.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from typing import Any

import fastavro
from fastavro.types import Schema
from pulsar.schema import AvroSchema
from pydantic import ValidationError

from wire.cloudevents import MAX_MESSAGE_BYTES, Inbound, WireError

__all__ = [
    "COMANDO_CREAR_PARTNER",
    "COMANDO_CREAR_PARTNER_DEFINITION",
    "EVENTO_PARTNER_CREADO",
    "EVENTO_PARTNER_CREADO_DEFINITION",
    "EVENTO_PARTNER_ELIMINADO",
    "EVENTO_PARTNER_ELIMINADO_DEFINITION",
    "DecodeError",
    "RawAvroSchema",
    "avro_decode",
    "avro_encode",
    "avro_schema",
    "decode_contrato_aprobado",
    "decode_contrato_creado",
    "decode_contrato_rechazado",
    "decode_partner_creado",
    "encode_crear_partner",
    "json_decode",
    "json_encode",
]

_STR = ["null", "string"]

# The schemas as pulsar-client's AvroSchema derives them from the services' Record classes
# (fields in declaration order, every field a nullable union, no namespace): the JSON the
# services register with Pulsar. Kept as plain dicts, so the orchestrator and the simulators
# register exactly the same definition (PulsarLink's producer, the simulators' consumer),
# and parsed for fastavro below. Fields inherited from the services' base class
# EventoIntegracion are not in them: pulsar-client's Record reads only a class's own fields.

#: Topic `PartnerCreado`, published by integraciones after it created a partner.
EVENTO_PARTNER_CREADO_DEFINITION: dict[str, Any] = {
    "type": "record", "name": "EventoPartnerCreado",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "PartnerCreadoPayload",
        "fields": [{"name": "partner_id", "type": _STR}]}]}],
}

#: Topic `comando-crear-partner`, consumed by integraciones (it creates the partner, then
#: publishes PartnerCreado).
COMANDO_CREAR_PARTNER_DEFINITION: dict[str, Any] = {
    "type": "record", "name": "ComandoCrearPartner",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "CrearPartnerPayload",
        "fields": [{"name": n, "type": _STR} for n in ("nombre", "email", "telefono", "direccion")]}]}],
}

#: Topic `eventos-partners-eliminado`, published by integraciones after a (soft) delete.
EVENTO_PARTNER_ELIMINADO_DEFINITION: dict[str, Any] = {
    "type": "record", "name": "EventoPartnerEliminado",
    "fields": [{"name": "data", "type": ["null", {
        "type": "record", "name": "PartnerPayload",
        "fields": [{"name": n, "type": _STR} for n in
                   ("partner_id", "nombre", "email", "telefono", "direccion", "estado", "estado_kyc")]}]}],
}

EVENTO_PARTNER_CREADO: Schema = fastavro.parse_schema(copy.deepcopy(EVENTO_PARTNER_CREADO_DEFINITION))
COMANDO_CREAR_PARTNER: Schema = fastavro.parse_schema(copy.deepcopy(COMANDO_CREAR_PARTNER_DEFINITION))
EVENTO_PARTNER_ELIMINADO: Schema = fastavro.parse_schema(copy.deepcopy(EVENTO_PARTNER_ELIMINADO_DEFINITION))


class RawAvroSchema(AvroSchema):  # type: ignore[misc]  # pulsar has no type information
    """A Pulsar Avro schema given as its JSON definition (no Record class), for a producer or
    consumer to register with Pulsar while the payloads are encoded here: `encode` lets bytes
    through as they are (a dict is encoded with the definition), and `msg.data()` stays the
    raw bytes. pulsar-client's own `AvroSchema(None, schema_definition=...)` encodes dicts
    only."""

    def __init__(self, definition: dict[str, Any]) -> None:
        super().__init__(None, schema_definition=copy.deepcopy(definition))

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        return bytes(super().encode(obj))


def avro_schema(definition: dict[str, Any]) -> RawAvroSchema:
    """The Pulsar schema of a topic carrying `definition` (one of the `*_DEFINITION`s): the JSON
    sent to Pulsar is byte for byte what the service registers with pulsar-client's
    AvroSchema of its Record class, so both sides share one schema version."""
    return RawAvroSchema(definition)


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


# --- inbound: the services' messages as participant events, before routing ------------------
def _event_id(kind: str, message_id: str) -> str:
    """These messages carry no id of their own: the Pulsar message id names them (the same on
    every redelivery), so the saga recognises a message it already applied."""
    return f"alpes:{kind}:{message_id}"


def _text(payload: bytes) -> str:
    """The message as received, for dead letters further on (Avro as base64)."""
    return "base64:" + base64.b64encode(payload).decode()


def _partner_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or not value.isprintable():
        raise WireError(f"{what}: partner_id missing or not a printable string of at most 200 characters")
    return value


def _opt_str(record: dict[str, Any], name: str, limit: int = 200) -> str | None:
    v = record.get(name)
    if v is None:
        return None
    return str(v)[:limit] if isinstance(v, str | int | float) else None


def decode_partner_creado(payload: bytes, message_id: str) -> Inbound:
    """`PartnerCreado` (Avro EventoPartnerCreado): it names only the partner."""
    try:
        record = avro_decode(EVENTO_PARTNER_CREADO, payload)
    except DecodeError as exc:
        raise WireError(f"PartnerCreado: {exc}") from None
    data = record.get("data") or {}
    pid = _partner_id(data.get("partner_id"), "PartnerCreado")
    return Inbound("PartnerCreated", _event_id("PartnerCreado", message_id), None, None, pid,
                   {"partner_id": pid}, _text(payload))


def _contract_json(payload: bytes, topic: str) -> dict[str, Any]:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise WireError(f"{topic}: oversized: {len(payload)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        return json_decode(payload)
    except DecodeError as exc:
        raise WireError(f"{topic}: {exc}") from None


def decode_contrato_creado(payload: bytes, message_id: str) -> Inbound:
    """`ContratoCreado` (alianzas' JSON contract; its `id` is null on the wire)."""
    c = _contract_json(payload, "ContratoCreado")
    pid = _partner_id(c.get("partner_id"), "ContratoCreado")
    monto = c.get("monto")
    fields: dict[str, Any] = {"partner_id": pid, "contrato_id": _opt_str(c, "id"),
                              "tipo": _opt_str(c, "tipo", 50), "moneda": _opt_str(c, "moneda", 10),
                              "monto": float(monto) if isinstance(monto, int | float) else None}
    return _checked(Inbound("ContractCreated", _event_id("ContratoCreado", message_id), None, None, pid,
                            fields, payload.decode("utf-8")))


def decode_contrato_aprobado(payload: bytes, message_id: str) -> Inbound:
    c = _contract_json(payload, "contrato-aprobado")
    pid = _partner_id(c.get("partner_id"), "contrato-aprobado")
    return _checked(Inbound("ContractApproved", _event_id("contrato-aprobado", message_id), None, None, pid,
                            {"partner_id": pid, "contrato_id": _opt_str(c, "contrato_id")},
                            payload.decode("utf-8")))


def decode_contrato_rechazado(payload: bytes, message_id: str) -> Inbound:
    c = _contract_json(payload, "contrato-rechazado")
    pid = _partner_id(c.get("partner_id"), "contrato-rechazado")
    why = "; ".join(str(x) for x in (c.get("causa_rechazo"), c.get("validacion_fallida")) if x)
    return _checked(Inbound("ContractRejected", _event_id("contrato-rechazado", message_id), None, None, pid,
                            {"partner_id": pid, "contrato_id": _opt_str(c, "contrato_id"),
                             "reason": (why or "rejected by compliance")[:2000]},
                            payload.decode("utf-8")))


def _checked(inbound: Inbound) -> Inbound:
    try:
        inbound.event("-")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise WireError(f"{inbound.type}: invalid {where}: {first.get('msg')}") from None
    return inbound


def encode_crear_partner(data: dict[str, Any]) -> bytes:
    """The Avro command integraciones consumes on `comando-crear-partner`."""
    return avro_encode(COMANDO_CREAR_PARTNER, {"data": {k: data.get(k) for k in
                                                       ("nombre", "email", "telefono", "direccion")}})
