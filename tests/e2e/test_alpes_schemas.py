"""PARTICIPANTS=alpes with INTEGRACIONES_TRANSPORT=pulsar: the worker starts BEFORE the Alpes
services subscribe (issue #20, task 9).

gestion-de-integraciones consumes `comando-crear-partner` with an Avro schema. The worker
opens its producer on that topic at start-up; a producer without a schema left the topic
with none, and Pulsar then refused the service's Avro consumer ("IncompatibleSchema ...
empty(BYTES) schema: new schema type AVRO"), so no partner was ever made from a command. The
worker's producer now registers the service's own schema: the service's consumer is taken
whichever starts first (the other order: tests/e2e/test_alpes.py), and its first schema
version stays the only one (the same definition on both sides)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import aiohttp
import pulsar
import pytest
from pulsar.schema import AvroSchema, Record, String

from simulators.alpes import AlpesBehaviour, AlpesParticipants, AlpesTopics
from tests.e2e.test_alpes import FAST, final, start
from tests.support.stack import PULSAR_ADMIN_URL, PULSAR_URL
from tests.support.worker import free_port

pytestmark = pytest.mark.stack


class CrearPartnerPayload(Record):  # gestion-de-integraciones' own classes (schema/v1/eventos.py)
    nombre = String()
    email = String()
    telefono = String(required=False)
    direccion = String(required=False)


class ComandoCrearPartner(Record):
    data = CrearPartnerPayload()


async def registered_schema(topic: str) -> tuple[int, Any]:
    """(HTTP status, body) of the topic's latest schema at Pulsar's admin API."""
    tenant_ns_name = topic.split("://", 1)[1]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"{PULSAR_ADMIN_URL}/admin/v2/schemas/{tenant_ns_name}/schema") as r:
            text = await r.text()
            return r.status, json.loads(text) if text.startswith("{") else text


class ServiceConsumer:
    """A consumer as gestion-de-integraciones makes it (its ConsumidorEventos): the synchronous
    client, a Shared subscription whose name ends in a fresh uuid4, AvroSchema of its Record
    class; `value()` decodes each command."""

    def __init__(self, topic: str) -> None:
        self.client = pulsar.Client(PULSAR_URL, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        self.consumer = self.client.subscribe(
            topic, subscription_name=f"gestion-integraciones.{topic}.{uuid.uuid4()}",
            consumer_type=pulsar.ConsumerType.Shared, schema=AvroSchema(ComandoCrearPartner))
        self.emails: list[str] = []
        self._got = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            with self._got:
                self.emails.append(msg.value().data.email)
                self._got.notify_all()
            self.consumer.acknowledge(msg)

    def wait_for(self, count: int, timeout: float) -> list[str]:
        """The emails of the commands decoded so far, once there are `count` (or time is up)."""
        with self._got:
            self._got.wait_for(lambda: len(self.emails) >= count, timeout)
            return list(self.emails)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.client.close()


async def test_the_worker_first_then_the_services_avro_consumer_and_sagas_complete(  # type: ignore[no-untyped-def]
        spawn, names) -> None:
    topics = AlpesTopics.prefixed(f"alpes-first-{names.tag}")
    ports = {"integraciones": free_port(), "alianzas": free_port()}
    worker = spawn(env={
        "PARTICIPANTS": "alpes", "INTEGRACIONES_TRANSPORT": "pulsar",
        "INTEGRACIONES_API_URL": f"http://127.0.0.1:{ports['integraciones']}",
        "ALIANZAS_API_URL": f"http://127.0.0.1:{ports['alianzas']}",
        "ALPES_PARTNER_CREADO_TOPIC": topics.partner_creado,
        "ALPES_COMANDO_CREAR_PARTNER_TOPIC": topics.comando_crear_partner,
        "ALPES_CONTRATO_CREADO_TOPIC": topics.contrato_creado,
        "ALPES_CONTRATO_APROBADO_TOPIC": topics.contrato_aprobado,
        "ALPES_CONTRATO_RECHAZADO_TOPIC": topics.contrato_rechazado, **FAST})
    await worker.wait_ready(timeout=60)  # /ready: its producer on comando-crear-partner is open
    assert "producers open for" in worker.log() and topics.comando_crear_partner in worker.log()

    # Now the services: integraciones' Avro consumer must be taken on the topic in use.
    sims = AlpesParticipants(PULSAR_URL, AlpesBehaviour(), topics, subscription=f"alpes-sim-{names.tag}",
                             integraciones_port=ports["integraciones"], alianzas_port=ports["alianzas"])
    await sims.start()
    service = await asyncio.to_thread(ServiceConsumer, topics.comando_crear_partner)
    try:
        status, schema = await registered_schema(topics.comando_crear_partner)
        assert status == 200, schema
        assert (schema["type"], schema["version"]) == ("AVRO", 0), schema  # one definition, both sides
        assert json.loads(schema["data"]) == ComandoCrearPartner.schema()  # the service's own

        addresses = [f"first{n}-{names.tag}@example.com" for n in range(5)]
        sagas = {a: await start(worker, a) for a in addresses}
        for address, saga_id in sagas.items():
            body = await final(worker, saga_id)
            assert body["status"] == "completed", body
            partner = sims.by_email(address)
            assert partner is not None and body["partner_id"] == partner["id"], body
        assert sims.counts["commands"] == 5 and sims.counts["posts"] == 0, dict(sims.counts)
        decoded = await asyncio.to_thread(service.wait_for, 5, 10.0)
        assert sorted(decoded) == sorted(addresses)  # what the real service's consumer decodes
    finally:
        await asyncio.to_thread(service.close)
        await sims.stop()
