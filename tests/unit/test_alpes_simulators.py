"""The Alpes simulators without a broker: their HTTP APIs (publishing to a fake), what they
publish, and their rules (alianzas' contracts, compliance's verdicts, the fault draws)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientSession

from simulators.alpes import (
    AlpesBehaviour,
    AlpesParticipants,
    AlpesTopics,
    Compliance,
    contrato_id_for,
    email_with,
    make_contract,
    review,
)
from simulators.alpes.__main__ import _parser
from simulators.alpes.common import MONTO_RECHAZO, VALIDACIONES
from wire.alpes import (
    COMANDO_CREAR_PARTNER,
    COMANDO_CREAR_PARTNER_DEFINITION,
    EVENTO_PARTNER_CREADO,
    EVENTO_PARTNER_CREADO_DEFINITION,
    EVENTO_PARTNER_ELIMINADO,
    EVENTO_PARTNER_ELIMINADO_DEFINITION,
    avro_decode,
    avro_encode,
    json_decode,
)

T = AlpesTopics()


class Recorder:
    """A fake publisher: keeps every (topic, payload); `gate`, when cleared, holds every publish."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, topic: str, payload: bytes) -> None:
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append((topic, payload))

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p in self.sent if t == topic]


async def _sims(behaviour: AlpesBehaviour | None = None) -> tuple[AlpesParticipants, Recorder]:
    rec = Recorder()
    sims = AlpesParticipants(behaviour=behaviour, publish=rec)
    await sims.start()
    return sims, rec


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def _post(http: ClientSession, sims: AlpesParticipants, body: Any,
                raw: bytes | None = None) -> tuple[int, Any]:
    url = f"{sims.integraciones_url}/api/v1/partners"
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with http.post(url, **kwargs) as r:
        return r.status, await r.json()


async def _delete(http: ClientSession, sims: AlpesParticipants, pid: str) -> tuple[int, Any]:
    async with http.delete(f"{sims.integraciones_url}/api/v1/partners/{pid}") as r:
        return r.status, await r.json()


# --- integraciones over HTTP -------------------------------------------------------------------


async def test_post_answers_201_with_the_partner_after_publishing_partner_creado(
        http: ClientSession) -> None:
    sims, rec = await _sims()
    try:
        rec.gate.clear()  # hold the publish: the answer must wait for it
        body = {"nombre": "Acme", "email": "acme@example.com", "telefono": "555", "direccion": "Calle 1"}
        request = asyncio.ensure_future(_post(http, sims, body))
        for _ in range(100):
            if sims.partners:
                break
            await asyncio.sleep(0.01)
        assert len(sims.partners) == 1  # saved, but not answered while PartnerCreado is not out
        await asyncio.sleep(0.05)
        assert not request.done()
        rec.gate.set()
        status, answer = await request
        assert status == 201
        assert answer["mensaje"]
        partner = answer["partner"]
        assert set(partner) == {"id", "nombre", "email", "telefono", "direccion", "estado", "estado_kyc",
                                "fecha_creacion"}
        assert (partner["nombre"], partner["email"], partner["telefono"], partner["direccion"]) == (
            "Acme", "acme@example.com", "555", "Calle 1")
        assert (partner["estado"], partner["estado_kyc"]) == ("ACTIVO", "PENDIENTE")
        assert uuid.UUID(partner["id"]).version == 4
        datetime.fromisoformat(partner["fecha_creacion"])
        assert rec.sent == [(T.partner_creado, rec.sent[0][1])]
        assert avro_decode(EVENTO_PARTNER_CREADO, rec.sent[0][1]) == {"data": {"partner_id": partner["id"]}}
        assert sims.partners[partner["id"]] == partner
        assert sims.by_email("acme@example.com") == partner and sims.live_partners() == {partner["id"]}
    finally:
        await sims.stop()


async def test_optional_fields_may_be_left_out(http: ClientSession) -> None:
    sims, _ = await _sims()
    try:
        status, answer = await _post(http, sims, {"nombre": "A", "email": "a@example.com"})
        assert status == 201
        assert (answer["partner"]["telefono"], answer["partner"]["direccion"]) == (None, None)
    finally:
        await sims.stop()


@pytest.mark.parametrize(("body", "raw"), [
    ({"email": "x@example.com"}, None),
    ({"nombre": "X"}, None),
    ({"nombre": "", "email": "x@example.com"}, None),
    ({"nombre": "X", "email": None}, None),
    ([{"nombre": "X", "email": "x@example.com"}], None),
    ("a string", None),
    (None, b"{not json"),
    (None, b""),
])
async def test_post_of_invalid_data_answers_400(http: ClientSession, body: Any, raw: bytes | None) -> None:
    sims, rec = await _sims()
    try:
        status, answer = await _post(http, sims, body, raw)
        assert (status, answer["codigo"]) == (400, "DATOS_INVALIDOS")
        assert sims.partners == {} and rec.sent == []
    finally:
        await sims.stop()


async def test_a_taken_email_answers_409_even_after_the_partner_was_deleted(http: ClientSession) -> None:
    sims, rec = await _sims()
    try:
        body = {"nombre": "A", "email": "same@example.com"}
        status, answer = await _post(http, sims, body)
        assert status == 201
        assert (await _post(http, sims, {**body, "nombre": "B"}))[1]["codigo"] == "EMAIL_EXISTENTE"
        assert (await _delete(http, sims, answer["partner"]["id"]))[0] == 200
        status, again = await _post(http, sims, body)
        assert (status, again["codigo"]) == (409, "EMAIL_EXISTENTE")
        assert len(sims.partners) == 1 and len(rec.on(T.partner_creado)) == 1
        assert sims.counts["conflicts"] == 2
    finally:
        await sims.stop()


async def test_the_idempotency_key_header_is_ignored(http: ClientSession) -> None:
    sims, _ = await _sims()
    try:
        url = f"{sims.integraciones_url}/api/v1/partners"
        headers = {"Idempotency-Key": "k-1"}
        for email, expected in (("k1@example.com", 201), ("k2@example.com", 201), ("k1@example.com", 409)):
            async with http.post(url, json={"nombre": "N", "email": email}, headers=headers) as r:
                assert r.status == expected
        assert len(sims.partners) == 2
    finally:
        await sims.stop()


@pytest.mark.parametrize("publish_on_failed_post", [True, False])
async def test_a_post_failing_after_save_answers_500_then_409_with_one_partner_saved(
        http: ClientSession, publish_on_failed_post: bool) -> None:
    b = AlpesBehaviour(fail_post_after_save=0.5, publish_on_failed_post=publish_on_failed_post)
    sims, rec = await _sims(b)
    try:
        email = email_with(b, "fail-post", prefix="fp")
        status, answer = await _post(http, sims, {"nombre": "F", "email": email})
        assert (status, answer["codigo"]) == (500, "ERROR_INTERNO")
        assert len(sims.partners) == 1
        partner = sims.by_email(email)
        assert partner is not None and partner["estado"] == "ACTIVO"
        status, answer = await _post(http, sims, {"nombre": "F", "email": email})
        assert (status, answer["codigo"]) == (409, "EMAIL_EXISTENTE")
        assert len(sims.partners) == 1
        published = [avro_decode(EVENTO_PARTNER_CREADO, p) for p in rec.on(T.partner_creado)]
        assert published == ([{"data": {"partner_id": partner["id"]}}] if publish_on_failed_post else [])
        # an email the fault does not draw is created normally
        status, _ = await _post(http, sims, {"nombre": "G", "email": email_with(b, "fail-post", False, "fp")})
        assert status == 201
        assert sims.counts["posts_failed_after_save"] == 1
    finally:
        await sims.stop()


async def test_a_post_whose_event_cannot_be_published_answers_500_with_the_partner_saved(
        http: ClientSession) -> None:
    sims, rec = await _sims()
    try:
        rec.fail = True
        status, answer = await _post(http, sims, {"nombre": "P", "email": "p@example.com"})
        assert (status, answer["codigo"]) == (500, "ERROR_INTERNO")
        assert len(sims.partners) == 1 and sims.counts["publish_failed"] == 1
    finally:
        await sims.stop()


async def test_delete_is_a_soft_delete_then_410_and_404_for_an_unknown_id(http: ClientSession) -> None:
    sims, rec = await _sims()
    try:
        _, answer = await _post(http, sims, {"nombre": "D", "email": "d@example.com", "telefono": "1"})
        pid = answer["partner"]["id"]
        status, answer = await _delete(http, sims, pid)
        assert status == 200 and answer["partner_id"] == pid and answer["mensaje"]
        assert sims.partners[pid]["estado"] == "ELIMINADO" and sims.live_partners() == set()
        [payload] = rec.on(T.partner_eliminado)
        assert avro_decode(EVENTO_PARTNER_ELIMINADO, payload) == {"data": {
            "partner_id": pid, "nombre": "D", "email": "d@example.com", "telefono": "", "direccion": "",
            "estado": "ELIMINADO", "estado_kyc": ""}}
        status, answer = await _delete(http, sims, pid)
        assert (status, answer["codigo"]) == (410, "PARTNER_YA_ELIMINADO")
        status, answer = await _delete(http, sims, str(uuid.uuid4()))
        assert (status, answer["codigo"]) == (404, "PARTNER_NO_ENCONTRADO")
        assert len(rec.on(T.partner_eliminado)) == 1
    finally:
        await sims.stop()


async def test_every_delete_of_a_partner_drawn_by_fail_delete_answers_500(http: ClientSession) -> None:
    b = AlpesBehaviour(fail_delete=0.5)
    sims, rec = await _sims(b)
    try:
        bad = email_with(b, "fail-delete", prefix="fd")
        good = email_with(b, "fail_delete", False, prefix="fd")
        _, answer = await _post(http, sims, {"nombre": "B", "email": bad})
        pid = answer["partner"]["id"]
        for _ in range(3):
            status, answer = await _delete(http, sims, pid)
            assert (status, answer["codigo"]) == (500, "ERROR_ELIMINACION")
        assert sims.partners[pid]["estado"] == "ACTIVO" and rec.on(T.partner_eliminado) == []
        _, answer = await _post(http, sims, {"nombre": "G", "email": good})
        assert (await _delete(http, sims, answer["partner"]["id"]))[0] == 200
        assert (sims.counts["deletes_failed"], sims.counts["deletes"]) == (3, 1)
    finally:
        await sims.stop()


async def test_get_partners_one_partner_and_health(http: ClientSession) -> None:
    sims, _ = await _sims()
    try:
        created = [(await _post(http, sims, {"nombre": n, "email": f"{n}@example.com"}))[1]["partner"]
                   for n in ("a", "b")]
        await _delete(http, sims, created[0]["id"])
        async with http.get(f"{sims.integraciones_url}/api/v1/partners") as r:
            assert r.status == 200
            listed = await r.json()
        assert listed["total"] == 2  # wrapped, as the real service answers
        assert {p["id"]: p["estado"] for p in listed["partners"]} == {created[0]["id"]: "ELIMINADO",
                                                                      created[1]["id"]: "ACTIVO"}
        async with http.get(f"{sims.integraciones_url}/api/v1/partners/{created[1]['id']}") as r:
            assert (r.status, await r.json()) == (200, {"partner": created[1]})
        async with http.get(f"{sims.integraciones_url}/api/v1/partners/nope") as r:
            assert r.status == 404
        async with http.get(f"{sims.integraciones_url}/health") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
    finally:
        await sims.stop()


# --- integraciones' command consumer -----------------------------------------------------------


def _command(**data: str | None) -> bytes:
    return avro_encode(COMANDO_CREAR_PARTNER, {"data": {"nombre": None, "email": None, "telefono": None,
                                                        "direccion": None, **data}})


async def test_a_command_creates_the_partner_and_publishes_partner_creado() -> None:
    sims, rec = await _sims()
    try:
        await sims.integraciones.on_command(_command(nombre="C", email="c@example.com", telefono="9"))
        partner = sims.by_email("c@example.com")
        assert partner is not None and (partner["nombre"], partner["telefono"], partner["direccion"]) == (
            "C", "9", None)
        assert [avro_decode(EVENTO_PARTNER_CREADO, p) for p in rec.on(T.partner_creado)] == [
            {"data": {"partner_id": partner["id"]}}]
    finally:
        await sims.stop()


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff",
    b"",
    json.dumps({"data": {"nombre": "x", "email": "y"}}).encode(),
    avro_encode(COMANDO_CREAR_PARTNER, {"data": None}),
    _command(nombre="no email"),
    _command(email="no-name@example.com"),
])
async def test_garbage_or_invalid_commands_are_dropped(payload: bytes) -> None:
    sims, rec = await _sims()
    try:
        await sims.integraciones.on_command(payload)
        assert sims.partners == {} and rec.sent == []
        assert sims.counts["garbage_commands"] + sims.counts["commands_invalid"] == 1
    finally:
        await sims.stop()


async def test_a_command_for_a_taken_email_is_dropped() -> None:
    sims, rec = await _sims()
    try:
        await sims.integraciones.on_command(_command(nombre="C", email="c@example.com"))
        await sims.integraciones.on_command(_command(nombre="C2", email="c@example.com"))
        assert len(sims.partners) == 1 and len(rec.sent) == 1 and sims.counts["conflicts"] == 1
    finally:
        await sims.stop()


async def test_a_command_whose_event_cannot_be_published_raises_to_be_redelivered() -> None:
    sims, rec = await _sims()
    try:
        rec.fail = True
        with pytest.raises(RuntimeError):
            await sims.integraciones.on_command(_command(nombre="C", email="c@example.com"))
        rec.fail = False
        await sims.integraciones.on_command(_command(nombre="C", email="c@example.com"))  # the redelivery
        assert len(sims.partners) == 1 and rec.sent == []  # the event is lost, as with the real one
    finally:
        await sims.stop()


# --- alianzas ----------------------------------------------------------------------------------


def _partner_creado(pid: str | None) -> bytes:
    return avro_encode(EVENTO_PARTNER_CREADO, {"data": {"partner_id": pid}})


async def test_alianzas_answers_partner_creado_with_a_contract_in_json() -> None:
    sims, rec = await _sims()
    try:
        pid = str(uuid.uuid4())
        await sims.alianzas.on_partner_creado(_partner_creado(pid))
        [payload] = rec.on(T.contrato_creado)
        contract = json.loads(payload.decode("utf-8"))
        assert list(contract) == ["id", "partner_id", "tipo", "fecha_inicio", "fecha_fin", "monto", "moneda",
                                  "condiciones", "estado", "fecha_creacion", "fecha_actualizacion"]
        assert contract["id"] is None and contract["partner_id"] == pid
        assert contract["tipo"] in ("CPA", "CPL", "CPC", "revshare", "fijo")
        assert contract["estado"] == "activo" and contract["moneda"] in ("COP", "USD")
        assert isinstance(contract["monto"], float) and 100 <= contract["monto"] <= 50000
        datetime.fromisoformat(contract["fecha_inicio"])
        datetime.fromisoformat(contract["fecha_creacion"])
        assert contract["fecha_actualizacion"] is None
        [stored] = sims.alianzas.contracts_for(pid)
        assert isinstance(stored["id"], int)
        assert review(contract)[0]
    finally:
        await sims.stop()


async def test_alianzas_draws_its_faults_from_the_email_of_the_partner(http: ClientSession) -> None:
    b = AlpesBehaviour(reject_contract=0.3, no_contract=0.3)
    sims, rec = await _sims(b)
    try:
        emails = {
            "reject": email_with(b, "reject-contract", prefix="al", avoid=["no-contract"]),
            "silent": email_with(b, "no-contract", prefix="al"),
            "fine": email_with(b, "reject-contract", False, prefix="al", avoid=["no-contract"]),
        }
        ids = {}
        for kind, email in emails.items():
            status, answer = await _post(http, sims, {"nombre": kind, "email": email})
            assert status == 201
            ids[kind] = answer["partner"]["id"]
        for payload in rec.on(T.partner_creado):  # what the broker would hand alianzas
            await sims.alianzas.on_partner_creado(payload)
        contracts = {c["partner_id"]: c for c in map(json_decode, rec.on(T.contrato_creado))}
        assert set(contracts) == {ids["reject"], ids["fine"]}
        assert contracts[ids["reject"]]["monto"] == MONTO_RECHAZO
        assert contracts[ids["fine"]]["monto"] <= 50000
        assert sims.counts["contracts_withheld"] == 1
    finally:
        await sims.stop()


def test_a_partner_unknown_to_alianzas_draws_its_faults_from_its_id() -> None:
    b = AlpesBehaviour(no_contract=0.5)
    pid = next(p for p in (f"pid-{n:08d}" for n in range(1000)) if b.chooses(p, "no-contract"))
    assert make_contract(pid, b) is None
    assert make_contract(pid, b, key=email_with(b, "no-contract", False)) is not None


def test_the_contract_is_the_same_for_the_same_partner() -> None:
    b, now = AlpesBehaviour(), datetime(2025, 1, 2, 3, 4, 5)
    assert make_contract("p" * 36, b, now=now) == make_contract("p" * 36, b, now=now)


@pytest.mark.parametrize("payload", [
    b"garbage that is not avro at all",
    b"",
    avro_encode(EVENTO_PARTNER_CREADO, {"data": None}),
    _partner_creado(None),
    _partner_creado("x") + b"trailing",
])
async def test_alianzas_drops_garbage(payload: bytes) -> None:
    sims, rec = await _sims()
    try:
        await sims.alianzas.on_partner_creado(payload)
        assert rec.sent == [] and sims.counts["garbage_partner_creado"] == 1
    finally:
        await sims.stop()


async def test_alianzas_http_stores_a_posted_contract_and_publishes_nothing(http: ClientSession) -> None:
    sims, rec = await _sims()
    try:
        contract = {"partner_id": str(uuid.uuid4()), "tipo": "CPA", "fecha_inicio": "2025-01-01",
                    "monto": 10.5, "moneda": "USD"}
        async with http.post(f"{sims.alianzas_url}/posts/", json=contract) as r:
            assert r.status == 201
            answer = await r.json()
        assert list(answer) == ["id"] and isinstance(answer["id"], int)
        assert sims.alianzas.contracts[answer["id"]]["partner_id"] == contract["partner_id"]
        for bad in ({"tipo": "CPA", "fecha_inicio": "2025-01-01"}, {**contract, "tipo": "nope"}, [contract]):
            async with http.post(f"{sims.alianzas_url}/posts/", json=bad) as r:
                assert r.status == 400 and "msg" in await r.json()
        async with http.get(f"{sims.alianzas_url}/health") as r:
            assert r.status == 200
        async with http.get(f"{sims.alianzas_url}/posts/ping") as r:
            assert await r.text() == "pong"
        assert rec.sent == [] and len(sims.alianzas.contracts) == 1
    finally:
        await sims.stop()


# --- compliance --------------------------------------------------------------------------------


def _contract(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"id": None, "partner_id": "0f8c0a5e-1111-4222-8333-944455556666", "tipo": "CPA",
                         "fecha_inicio": "2025-01-01", "fecha_fin": None, "monto": 1234.5, "moneda": "COP",
                         "condiciones": "Condición A", "estado": "activo",
                         "fecha_creacion": "2025-01-01T00:00:00", "fecha_actualizacion": None}
    c.update(over)
    return c


def test_compliance_approves_a_contract_within_its_rules() -> None:
    now = datetime(2025, 5, 6, 7, 8, 9)
    ok, body = review(_contract(), now)
    assert ok
    assert body == {"partner_id": _contract()["partner_id"],
                    "contrato_id": contrato_id_for(_contract()["partner_id"]), "monto": 1234.5,
                    "moneda": "COP",
                    "estado": "activo", "tipo": "CPA", "fecha_aprobacion": now.isoformat(),
                    "validaciones_pasadas": list(VALIDACIONES)}
    assert uuid.UUID(body["contrato_id"]).version == 5
    assert review(_contract(id="c-7"))[1]["contrato_id"] == "c-7"


@pytest.mark.parametrize(("over", "fallida"), [
    ({"monto": 75000.0}, "MONTO_INVALIDO"),
    ({"monto": 50000.01}, "MONTO_INVALIDO"),
    ({"moneda": "GBP"}, "MONEDA_NO_PERMITIDA"),
    ({"moneda": "cop"}, "MONEDA_NO_PERMITIDA"),  # the currency's case is not folded
    ({"estado": "inactivo"}, "ESTADO_INVALIDO"),
    ({"estado": "rechazado"}, "ESTADO_INVALIDO"),
    ({"partner_id": "short"}, "PARTNER_INVALIDO"),
    ({"monto": None}, "ERROR_TECNICO"),
    ({"monto": "100"}, "ERROR_TECNICO"),
    ({"estado": None}, "ERROR_TECNICO"),
    ({"monto": 75000.0, "moneda": "GBP", "estado": "vencido"}, "MONTO_INVALIDO"),  # the first rule broken
])
def test_compliance_rejects_a_contract_breaking_a_rule(over: dict[str, Any], fallida: str) -> None:
    now = datetime(2025, 5, 6, 7, 8, 9)
    ok, body = review(_contract(**over), now)
    assert not ok
    assert list(body) == ["partner_id", "contrato_id", "monto", "moneda", "estado", "tipo", "fecha_rechazo",
                          "causa_rechazo", "validacion_fallida"]
    assert body["validacion_fallida"] == fallida and body["causa_rechazo"]
    assert body["fecha_rechazo"] == now.isoformat()


@pytest.mark.parametrize("estado", ["activo", "ACTIVO", "Pendiente", "suspendido"])
def test_compliance_folds_the_case_of_estado(estado: str) -> None:
    assert review(_contract(estado=estado))[0]


def test_compliance_defaults_missing_fields_as_the_real_consumer() -> None:
    ok, body = review({"partner_id": "0f8c0a5e-1111-4222-8333-944455556666"})
    assert ok and (body["monto"], body["moneda"], body["estado"], body["tipo"]) == (0, "USD", "PENDIENTE",
                                                                                    "STANDARD")


async def test_compliance_publishes_its_verdicts_and_drops_garbage() -> None:
    rec = Recorder()
    compliance = Compliance(rec)
    await compliance.on_contrato_creado(json.dumps(_contract()).encode())
    await compliance.on_contrato_creado(json.dumps(_contract(monto=MONTO_RECHAZO)).encode())
    for garbage in (b"\xff", b"not json", b"[1, 2]", b'"text"',
                    json.dumps(_contract(partner_id=None)).encode(), json.dumps({"monto": 1}).encode()):
        await compliance.on_contrato_creado(garbage)
    assert [t for t, _ in rec.sent] == [T.contrato_aprobado, T.contrato_rechazado]
    assert json_decode(rec.sent[1][1])["validacion_fallida"] == "MONTO_INVALIDO"
    assert (compliance.counts["approvals"], compliance.counts["rejections"],
            compliance.counts["garbage_contrato_creado"]) == (1, 1, 6)
    assert len(compliance.approved) == len(compliance.rejected) == 1


# --- the chain, in process ---------------------------------------------------------------------


async def test_post_to_verdict_in_process(http: ClientSession) -> None:
    """What the broker would do, by hand: PartnerCreado to alianzas, ContratoCreado to compliance."""
    b = AlpesBehaviour(reject_contract=0.5)
    sims, rec = await _sims(b)
    try:
        emails = [email_with(b, "reject-contract", want, prefix="chain") for want in (False, True)]
        for email in emails:
            assert (await _post(http, sims, {"nombre": "N", "email": email}))[0] == 201
        for payload in rec.on(T.partner_creado):
            await sims.alianzas.on_partner_creado(payload)
        for payload in rec.on(T.contrato_creado):
            await sims.compliance.on_contrato_creado(payload)
        ok_partner, bad_partner = (sims.by_email(e) for e in emails)
        assert ok_partner is not None and bad_partner is not None
        assert [json_decode(p)["partner_id"] for p in rec.on(T.contrato_aprobado)] == [ok_partner["id"]]
        assert [json_decode(p)["partner_id"] for p in rec.on(T.contrato_rechazado)] == [bad_partner["id"]]
        assert (sims.counts["approvals"], sims.counts["rejections"]) == (1, 1)
    finally:
        await sims.stop()


# --- behaviour, topics, command line -----------------------------------------------------------


def test_fault_draws_are_stable_and_follow_the_shares() -> None:
    b = AlpesBehaviour(fail_post_after_save=0.2, fail_delete=0.0, reject_contract=1.0, no_contract=0.5)
    emails = [f"s-{n}@example.com" for n in range(2000)]
    by_salt = [b.chooses(e, "fail-post") for e in emails]
    assert by_salt == [b.chooses(e, "fail_post_after_save") for e in emails]
    assert 0.15 < sum(b.chooses(e, "fail-post") for e in emails) / len(emails) < 0.25
    assert not any(b.chooses(e, "fail-delete") for e in emails)
    assert all(b.chooses(e, "reject-contract") for e in emails)
    # distinct salts: the faults are drawn independently
    both = sum(b.chooses(e, "fail-post") and b.chooses(e, "no-contract") for e in emails) / len(emails)
    assert 0.06 < both < 0.14
    with pytest.raises(ValueError):
        b.chooses("x@example.com", "no-such-fault")


def test_email_with_finds_emails_with_and_without_each_fault() -> None:
    b = AlpesBehaviour(fail_post_after_save=0.3, fail_delete=0.3, reject_contract=0.3, no_contract=0.3)
    for fault in ("fail-post", "fail-delete", "reject-contract", "no-contract"):
        for want in (True, False):
            email = email_with(b, fault, want, prefix="t")
            assert email.startswith("t-") and email.endswith("@example.com")
            assert b.chooses(email, fault) == want
    email = email_with(b, "reject-contract", avoid=["no-contract", "fail-post"])
    assert b.chooses(email, "reject-contract") and not b.chooses(email, "no-contract")
    with pytest.raises(ValueError):
        email_with(AlpesBehaviour(), "fail-delete", limit=50)


def test_topics_are_full_names_and_prefixed_ones_are_distinct() -> None:
    assert T.partner_creado == "persistent://public/default/PartnerCreado"
    assert T.contrato_rechazado == "persistent://public/default/contrato-rechazado"
    assert AlpesTopics(contrato_creado="persistent://t/n/X").contrato_creado == "persistent://t/n/X"
    p = AlpesTopics.prefixed("alpes-test-1")
    assert p.comando_crear_partner == "persistent://public/default/alpes-test-1-comando-crear-partner"
    assert AlpesTopics.prefixed("persistent://t/n/run").partner_eliminado == (
        "persistent://t/n/run-eventos-partners-eliminado")
    assert len({*vars(p).values(), *vars(T).values()}) == 12


def test_integraciones_registers_its_avro_schemas_and_the_others_none() -> None:
    """As the real services do: gestion-de-integraciones' consumer of comando-crear-partner and
    its producers with AvroSchema of its Record classes (the same JSON as wire.alpes'
    definitions); alianzas and compliance schemaless. An Avro consumer is what Pulsar refuses
    on a topic that something opened first without a schema: the simulator must meet that."""
    p = AlpesTopics.prefixed("alpes-schemas")
    schemas = AlpesParticipants(topics=p, publish=Recorder()).schemas()
    assert {t: json.loads(s.schema_info().schema()) for t, s in schemas.items()} == {
        p.comando_crear_partner: COMANDO_CREAR_PARTNER_DEFINITION,
        p.partner_creado: EVENTO_PARTNER_CREADO_DEFINITION,
        p.partner_eliminado: EVENTO_PARTNER_ELIMINADO_DEFINITION}
    assert {s.schema_info().schema_type().name for s in schemas.values()} == {"AVRO"}
    raw = _command(nombre="x", email="y")
    assert schemas[p.comando_crear_partner].encode(raw) == raw  # published bytes go out as they are


def test_command_line_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SIM_REJECT_CONTRACT", "SIM_INTEGRACIONES_PORT", "SIM_ALIANZAS_PORT", "SIM_LATENCY_S"):
        monkeypatch.delenv(var, raising=False)
    args = _parser().parse_args([])
    assert (args.integraciones_port, args.alianzas_port, args.reject_contract, args.latency) == (
        5001, 8001, 0.2, 0.05)
    monkeypatch.setenv("SIM_FAIL_DELETE", "0.3")
    assert _parser().parse_args(["--no-contract", "0.1"]).fail_delete == 0.3


async def test_urls_need_a_started_simulator() -> None:
    sims = AlpesParticipants(publish=Recorder())
    with pytest.raises(RuntimeError):
        _ = sims.integraciones_url
    async with sims:
        assert sims.integraciones_url.startswith("http://127.0.0.1:")
        assert sims.alianzas_url != sims.integraciones_url
