"""The Alpes services' wire formats (wire/alpes.py): what their messages become, and why
garbage is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulsar.schema import AvroSchema, Long, Record, String

from wire.alpes import (
    COMANDO_CREAR_PARTNER,
    COMANDO_CREAR_PARTNER_DEFINITION,
    EVENTO_PARTNER_CREADO,
    EVENTO_PARTNER_CREADO_DEFINITION,
    EVENTO_PARTNER_ELIMINADO_DEFINITION,
    avro_decode,
    avro_encode,
    avro_schema,
    decode_contrato_aprobado,
    decode_contrato_creado,
    decode_contrato_rechazado,
    decode_partner_creado,
    encode_crear_partner,
)
from wire.cloudevents import WireError


class PartnerCreadoPayload(Record):  # the service's own classes, as pulsar-client sees them
    partner_id = String()


class EventoPartnerCreado(Record):
    data = PartnerCreadoPayload()


class CrearPartnerPayload(Record):
    nombre = String()
    email = String()
    telefono = String(required=False)
    direccion = String(required=False)


class ComandoCrearPartner(Record):
    data = CrearPartnerPayload()


def test_partner_creado_as_the_service_encodes_it() -> None:
    event = EventoPartnerCreado(data=PartnerCreadoPayload(partner_id="p-1"))
    raw = AvroSchema(EventoPartnerCreado).encode(event)
    inbound = decode_partner_creado(raw, "12:3:-1")
    assert (inbound.type, inbound.partner_id, inbound.saga_id, inbound.correlation_id) == \
        ("PartnerCreated", "p-1", None, None)
    assert inbound.fields == {"partner_id": "p-1"}
    assert inbound.event_id == "alpes:PartnerCreado:12:3:-1"  # the same on every redelivery
    assert inbound.event("s").partner is None


def test_the_command_is_what_the_service_decodes() -> None:
    data = {"nombre": "Acme", "email": "a@b.co", "telefono": None, "direccion": "Calle 1"}
    ours = encode_crear_partner(data)
    theirs = AvroSchema(ComandoCrearPartner).decode(ours)
    assert (theirs.data.nombre, theirs.data.email, theirs.data.telefono, theirs.data.direccion) == \
        ("Acme", "a@b.co", None, "Calle 1")
    assert avro_decode(COMANDO_CREAR_PARTNER, ours) == {"data": data}


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "not an Avro EventoPartnerCreado"),
    (b"\xff\x00garbage", "not an Avro EventoPartnerCreado"),
    (avro_encode(EVENTO_PARTNER_CREADO, {"data": None}), "partner_id missing"),
    (avro_encode(EVENTO_PARTNER_CREADO, {"data": {"partner_id": "p"}}) + b"\x00", "left over"),
])
def test_garbage_partner_creado_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_partner_creado(payload, "1:1:-1")


CONTRACT = {"id": None, "partner_id": "p-1", "tipo": "CPA", "fecha_inicio": "2026-01-01", "fecha_fin": None,
            "monto": 1200.5, "moneda": "COP", "condiciones": "", "estado": "activo",
            "fecha_creacion": "2026-01-01T00:00:00", "fecha_actualizacion": "2026-01-01T00:00:00"}


def test_contrato_creado_names_its_partner() -> None:
    inbound = decode_contrato_creado(json.dumps(CONTRACT).encode(), "5:0:-1")
    assert (inbound.type, inbound.partner_id) == ("ContractCreated", "p-1")
    ev = inbound.event("s")
    assert (ev.contrato_id, ev.monto, ev.moneda, ev.tipo) == (None, 1200.5, "COP", "CPA")


def test_compliance_decisions() -> None:
    approved = {"partner_id": "p-1", "contrato_id": "c-9", "monto": 1, "moneda": "COP", "estado": "ACTIVO",
                "tipo": "CPA", "fecha_aprobacion": "x", "validaciones_pasadas": ["MONTO"]}
    ev = decode_contrato_aprobado(json.dumps(approved).encode(), "1:1:-1").event("s")
    assert (ev.type, ev.contrato_id) == ("ContractApproved", "c-9")
    rejected = {**approved, "contrato_id": None, "causa_rechazo": "Monto excede el limite",
                "validacion_fallida": "MONTO_MAXIMO"}
    ev = decode_contrato_rechazado(json.dumps(rejected).encode(), "1:2:-1").event("s")
    assert (ev.type, ev.contrato_id, ev.reason) == ("ContractRejected", None,
                                                    "Monto excede el limite; MONTO_MAXIMO")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "ContratoCreado: not UTF-8 JSON"),
    (b"\xff\xfe", "ContratoCreado: not UTF-8 JSON"),
    (b"[1, 2]", "ContratoCreado: not a JSON object"),
    (b'{"monto": 10}', "ContratoCreado: partner_id missing"),
    (b'{"partner_id": 7}', "ContratoCreado: partner_id missing"),
    (b'{"partner_id": "p", "moneda": "' + b"X" * 70_000 + b'"}', "oversized"),
])
def test_garbage_contracts_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_contrato_creado(payload, "1:1:-1")


# --- the schemas registered with Pulsar -----------------------------------------------------------
# gestion-de-integraciones' own Record classes (modulos/partners/infraestructura/eventos/schema/v1),
# base class included: pulsar-client's Record reads only a class's own fields.


class EventoIntegracion(Record):
    id = String()
    time = Long()
    ingestion = Long()
    specversion = String()
    type = String()
    datacontenttype = String()
    service_name = String()


class PartnerPayload(Record):
    partner_id = String()
    nombre = String()
    email = String()
    telefono = String(required=False)
    direccion = String(required=False)
    estado = String()
    estado_kyc = String()


def _service_classes() -> dict[str, type[Record]]:
    """The service's event classes (subclasses of EventoIntegracion), by their own names."""
    return {name: type(name, (EventoIntegracion,), {"data": payload()}) for name, payload in (
        ("ComandoCrearPartner", CrearPartnerPayload), ("EventoPartnerCreado", PartnerCreadoPayload),
        ("EventoPartnerEliminado", PartnerPayload))}


@pytest.mark.parametrize("definition", [COMANDO_CREAR_PARTNER_DEFINITION, EVENTO_PARTNER_CREADO_DEFINITION,
                                        EVENTO_PARTNER_ELIMINADO_DEFINITION],
                         ids=["ComandoCrearPartner", "EventoPartnerCreado", "EventoPartnerEliminado"])
def test_the_registered_schema_is_byte_for_byte_the_services(definition: dict[str, Any]) -> None:
    theirs = AvroSchema(_service_classes()[definition["name"]]).schema_info()
    assert json.loads(theirs.schema()) == definition
    ours = avro_schema(definition).schema_info()
    assert (ours.schema_type(), ours.name()) == (theirs.schema_type(), theirs.name())
    assert ours.schema() == theirs.schema()  # the very bytes Pulsar compares


def test_the_raw_avro_schema_lets_encoded_bytes_through() -> None:
    schema = avro_schema(COMANDO_CREAR_PARTNER_DEFINITION)
    raw = encode_crear_partner({"nombre": "Acme", "email": "a@b.co"})
    assert schema.encode(raw) == raw
    assert schema.encode({"data": None}) == avro_encode(COMANDO_CREAR_PARTNER, {"data": None})
    assert schema.decode(raw)["data"]["email"] == "a@b.co"
