"""PARTICIPANTS=alpes: the orchestrator drives the Alpes services as they are (simulators/alpes/:
integraciones' HTTP API and Avro PartnerCreado, alianzas' JSON ContratoCreado, compliance's
JSON decision), on the real local stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from domain import ids
from simulators.alpes import AlpesBehaviour, AlpesParticipants, AlpesTopics, email_with
from tests.support.pulsar import Tap
from tests.support.stack import PULSAR_URL
from tests.support.worker import Names, Worker

pytestmark = pytest.mark.stack

#: Shares high enough that a handful of emails finds each fault quickly; every test picks
#: its emails with or without each fault (simulators.alpes.email_with).
BEHAVIOUR = AlpesBehaviour(fail_post_after_save=0.3, fail_delete=0.3, reject_contract=0.3, no_contract=0.3)
FAULTS = ("fail-post", "fail-delete", "reject-contract", "no-contract")
FAST = {"ALPES_CONTRACT_TIMEOUT_S": "6", "ALPES_COMPLIANCE_TIMEOUT_S": "6", "SAGA_BACKOFF_S": "0.2",
        "SAGA_BACKOFF_MAX_S": "0.5", "SAGA_UNDO_MAX_ATTEMPTS": "3", "SAGA_REPLY_TIMEOUT_S": "6",
        "DEADLINE_TICK_S": "0.1", "PARTICIPANT_HTTP_ATTEMPTS": "2", "PARTICIPANT_HTTP_TIMEOUT_S": "3"}


def email(fault: str | None, tag: str) -> str:
    """An email that draws `fault` (None: no fault at all) and no other."""
    if fault is None:
        return email_with(BEHAVIOUR, FAULTS[0], want=False, prefix=tag, avoid=FAULTS[1:])
    return email_with(BEHAVIOUR, fault, prefix=tag, avoid=[f for f in FAULTS if f != fault])


@pytest.fixture
def topics(names: Names) -> AlpesTopics:
    return AlpesTopics.prefixed(f"alpes-{names.tag}")


@pytest.fixture
async def alpes(stack: None, topics: AlpesTopics, names: Names) -> AsyncIterator[AlpesParticipants]:
    sims = AlpesParticipants(PULSAR_URL, BEHAVIOUR, topics, subscription=f"alpes-sim-{names.tag}")
    await sims.start()
    yield sims
    await sims.stop()


def alpes_env(sims: AlpesParticipants, topics: AlpesTopics, **extra: str) -> dict[str, str]:
    return {"PARTICIPANTS": "alpes", "INTEGRACIONES_API_URL": sims.integraciones_url,
            "ALIANZAS_API_URL": sims.alianzas_url,
            "ALPES_PARTNER_CREADO_TOPIC": topics.partner_creado,
            "ALPES_COMANDO_CREAR_PARTNER_TOPIC": topics.comando_crear_partner,
            "ALPES_CONTRATO_CREADO_TOPIC": topics.contrato_creado,
            "ALPES_CONTRATO_APROBADO_TOPIC": topics.contrato_aprobado,
            "ALPES_CONTRATO_RECHAZADO_TOPIC": topics.contrato_rechazado, **FAST, **extra}


async def start(worker: Worker, address: str) -> str:
    body = {"nombre": f"Partner {address}", "email": address, "telefono": "+57 300 000 0000",
            "direccion": "Calle 1 # 2-3", "correlation_id": f"corr-{uuid.uuid4()}"}
    status, answer = await worker.post("/api/v1/saga/partner-creation", body)
    assert status == 202, answer
    return str(answer["saga_id"])


async def final(worker: Worker, saga_id: str, within_s: float = 60.0) -> dict[str, Any]:
    """The saga once it reached a final status (polled over HTTP)."""
    deadline = time.monotonic() + within_s
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        if status == 200 and body["status"] in ("completed", "compensated", "failed", "compensation_failed"):
            return dict(body)
        await asyncio.sleep(0.3)
    raise AssertionError(f"saga {saga_id} did not end within {within_s}s: {body}")


async def test_sagas_started_over_http_complete(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names, pulsar_client) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    dead = await Tap(pulsar_client, names.dead_letters).start()
    addresses = [email(None, f"http{n}-{names.tag}") for n in range(5)]
    sagas = {a: await start(worker, a) for a in addresses}
    for address, saga_id in sagas.items():
        body = await final(worker, saga_id)
        assert body["status"] == "completed", body
        assert body["flow"] == "alpes-partner"
        partner = alpes.by_email(address)
        assert partner is not None and body["partner_id"] == partner["id"]
        assert partner["estado"] == "ACTIVO"
    assert alpes.counts["posts"] == 5 and len(alpes.partners) == 5
    # integraciones announces each partner it created over HTTP (PartnerCreado) as well: the
    # saga records it as expected (issue #20, defect 10: it used to be dead-lettered, 5 here).
    for _ in range(100):
        _, metrics = await worker.get("/metrics")
        if 'saga_expected_duplicates_total{type="PartnerCreated"} 5' in metrics:
            break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError("the 5 PartnerCreado announcements were not recorded as expected")
    await dead.stop()
    assert dead.messages == [], [m.properties.get("reason") for m in dead.messages]


async def test_a_partner_created_by_itself_gets_a_saga_that_completes(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    made = []
    async with aiohttp.ClientSession() as http:
        for n in range(3):  # straight to integraciones: no command of the orchestrator's
            address = email(None, f"own{n}-{names.tag}")
            async with http.post(f"{alpes.integraciones_url}/api/v1/partners",
                                 json={"nombre": f"Own {n}", "email": address}) as r:
                assert r.status == 201
                made.append((await r.json())["partner"]["id"])
    for partner_id in made:
        body = await final(worker, ids.saga_id_for_partner(partner_id))
        assert (body["status"], body["origin"], body["partner_id"]) == \
            ("completed", "partner_event", partner_id), (body["reason"], body["done_steps"])
        assert body["partner"]["email"] == alpes.partners[partner_id]["email"]


async def test_a_rejected_contract_deletes_the_partner_and_compensates(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    address = email("reject-contract", f"rej-{names.tag}")
    body = await final(worker, await start(worker, address))
    assert body["status"] == "compensated", body
    assert "ContractRejected" in body["reason"]
    assert alpes.by_email(address)["estado"] == "ELIMINADO"
    assert alpes.counts["deletes"] >= 1
    # gestion-de-alianzas cannot cancel a contract: the saga says it left it (issue #20, 11).
    assert len(body["left_behind"]) == 1 and "contract" in body["left_behind"][0], body["left_behind"]


async def test_a_silent_alianzas_times_out_and_deletes_the_partner(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    address = email("no-contract", f"quiet-{names.tag}")
    body = await final(worker, await start(worker, address))
    assert body["status"] == "compensated", body
    assert "no ContractCreated within" in body["reason"]
    assert alpes.by_email(address)["estado"] == "ELIMINADO"


async def test_a_post_answered_500_after_saving_leaves_one_partner_and_completes(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    address = email("fail-post", f"p500-{names.tag}")
    body = await final(worker, await start(worker, address))
    assert body["status"] == "completed", body
    same = [p for p in alpes.partners.values() if p["email"] == address]
    assert len(same) == 1, same  # the retry's 409 was resolved by email, not by a second partner
    assert body["partner_id"] == same[0]["id"]
    # The retried POST (after a backoff with jitter) may come after the saga ended: integraciones
    # published PartnerCreado before its 500, which can finish the saga first.
    for _ in range(50):
        if alpes.counts["conflicts"] >= 1:
            break
        await asyncio.sleep(0.1)
    assert alpes.counts["posts_failed_after_save"] == 1 and alpes.counts["conflicts"] >= 1
    assert len([p for p in alpes.partners.values() if p["email"] == address]) == 1


async def test_a_delete_failing_every_time_ends_in_compensation_failed(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    # Rejected AND undeletable: the first such email (about one in ten draws).
    address = next(a for n in range(10_000) if BEHAVIOUR.chooses(a := f"stuck{n}-{names.tag}@example.com",
                                                                  "reject-contract")
                   and BEHAVIOUR.chooses(a, "fail-delete") and not BEHAVIOUR.chooses(a, "fail-post")
                   and not BEHAVIOUR.chooses(a, "no-contract"))
    body = await final(worker, await start(worker, address))
    assert body["status"] == "compensation_failed", body
    assert "gave up after 3 attempts" in body["reason"]
    assert alpes.by_email(address)["estado"] == "ACTIVO"  # it could not be deleted
    assert alpes.counts["deletes_failed"] >= 3


async def test_garbage_on_their_topics_becomes_dead_letters(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names, pulsar_client) -> None:
    worker = spawn(env=alpes_env(alpes, topics))
    await worker.wait_ready(timeout=60)
    dead = await Tap(pulsar_client, names.dead_letters).start()
    try:
        for topic, payload in ((topics.partner_creado, b"\xff\x00 not avro at all"),
                               (topics.contrato_creado, b"{not json"),
                               (topics.contrato_creado, b'{"monto": 10}')):
            producer = await pulsar_client.create_producer(topic)
            await producer.send(payload)
            await producer.close()
        await dead.wait_for(lambda t: len(t.messages) >= 3, 60, "3 dead letters")
        reasons = sorted(m.properties.get("reason", "") for m in dead.messages)
        assert any(r.startswith("PartnerCreado: not an Avro") for r in reasons), reasons
        assert any(r.startswith("ContratoCreado: not UTF-8 JSON") for r in reasons), reasons
        assert any("ContratoCreado: partner_id missing" in r for r in reasons), reasons
        payloads = {bytes(m.data) for m in dead.messages}
        assert b"\xff\x00 not avro at all" in payloads and b"{not json" in payloads  # as received
    finally:
        await dead.stop()


async def test_the_avro_command_transport_completes_sagas(  # type: ignore[no-untyped-def]
        spawn, alpes, topics, names) -> None:
    worker = spawn(env=alpes_env(alpes, topics, INTEGRACIONES_TRANSPORT="pulsar"))
    await worker.wait_ready(timeout=60)
    address = email(None, f"avro-{names.tag}")
    body = await final(worker, await start(worker, address))
    assert body["status"] == "completed", body
    assert alpes.counts["commands"] == 1 and alpes.counts["posts"] == 0
    assert body["partner_id"] == alpes.by_email(address)["id"]
