"""CloudEvents in and out: what becomes a domain event, and the reason when it cannot."""

from __future__ import annotations

import json

import pytest

from domain.messages import AllianceCreated, Command, Destination, PartnerCreated
from wire import MAX_MESSAGE_BYTES, WireError, decode_inbound, encode_command, encode_event


def _ce(**over: object) -> bytes:
    ce = {"specversion": "1.0", "id": "e-1", "type": "AllianceCreated", "source": "/alianzas",
          "data": {"partner_id": "p-1", "alliance_id": "a-1"}}
    ce.update(over)
    return json.dumps({k: v for k, v in ce.items() if v is not None}).encode()


def test_partner_created_flat_data_becomes_the_domain_event() -> None:
    raw = encode_event("PartnerCreated", "e-9", {"partner_id": "p-9", "nombre": "Acme", "email": "a@b.co",
                                                 "telefono": "1"}, source="/x", correlation_id="c-9")
    inbound = decode_inbound(raw)
    assert (inbound.type, inbound.partner_id, inbound.correlation_id, inbound.saga_id) == (
        "PartnerCreated", "p-9", "c-9", None)
    ev = inbound.event("saga-1")
    assert isinstance(ev, PartnerCreated)
    assert ev.partner.nombre == "Acme" and ev.partner.telefono == "1" and ev.saga_id == "saga-1"


def test_first_version_envelopes_with_service_name_are_accepted() -> None:
    inbound = decode_inbound(_ce(source=None, service_name="gestion-de-alianzas", sagaid="s-1"))
    assert inbound.saga_id == "s-1"
    assert isinstance(inbound.event("s-1"), AllianceCreated)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{nope", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'"a string"', "not a CloudEvent"),
    (_ce(specversion=None), "missing specversion"),
    (_ce(specversion="0.3"), "unsupported specversion"),
    (_ce(id=""), "empty id"),
    (_ce(id=7), "attribute 'id' must be a string"),
    (_ce(source=None), "missing source"),
    (_ce(type="Nope"), "unknown event type 'Nope'"),
    (_ce(data=[1]), "data must be an object"),
    (_ce(data={"partner_id": "p"}), "invalid data.alliance_id"),
    (_ce(data={"partner_id": 1, "alliance_id": "a"}), "invalid data.partner_id"),
    (_ce(sagaid=5), "attribute 'sagaid' must be a string"),
    (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "oversized"),
])
def test_bad_input_has_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_inbound(raw)


def test_commands_carry_saga_and_correlation_ids_as_extensions() -> None:
    cmd = Command(command_id="c-1", saga_id="s-1", correlation_id="corr-1",
                  destination=Destination.ALIANZAS, type="CreateAlliance", data={"partner_id": "p"})
    ce = json.loads(encode_command(cmd))
    assert ce["specversion"] == "1.0" and ce["id"] == "c-1" and ce["type"] == "CreateAlliance"
    assert (ce["sagaid"], ce["correlationid"]) == ("s-1", "corr-1")
    assert ce["source"] and ce["time"].endswith("Z") and ce["datacontenttype"] == "application/json"
    assert ce["data"] == {"partner_id": "p"}


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[" * 60_000, "nested too deeply"),
    (json.dumps({"specversion": "1.0", "id": "e", "type": "AllianceCreated", "source": "s",
                 "data": {"partner_id": "p", "alliance_id": "a"}}).encode("utf-16"), "not UTF-8"),
    (_ce(sagaid="x" * 201), "at most 200"),
    (_ce(correlationid="a\nb"), "printable"),
    (_ce(type="PartnerCreationFailed", data={"reason": "nul \x00 inside"}), "data.reason"),
    (_ce(type="PartnerCreated", data={"partner_id": "p", "nombre": "a\x00b", "email": "a@b.co"}),
     "nombre"),
])
def test_input_that_used_to_escape_validation_is_a_wire_error(raw: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_inbound(raw)


def test_routing_keys_inside_data_are_ignored() -> None:
    inbound = decode_inbound(_ce(data={"partner_id": "p", "alliance_id": "a", "saga_id": "evil",
                                       "event_id": "evil", "correlation_id": "evil", "type": "x"}))
    ev = inbound.event("the-saga")
    got = (ev.saga_id, ev.event_id, ev.correlation_id, ev.type)
    assert got == ("the-saga", "e-1", None, "AllianceCreated")
