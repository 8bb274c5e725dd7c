"""The three Alpes services together, on Pulsar (`AlpesParticipants`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pulsar
import pulsar.asyncio as apulsar
from aiohttp import web

from common.security import pulsar_options_from_env
from simulators.alpes.alianzas import Alianzas
from simulators.alpes.common import AlpesBehaviour, AlpesTopics, Publish, log
from simulators.alpes.compliance import Compliance
from simulators.alpes.integraciones import Integraciones
from wire.alpes import (
    COMANDO_CREAR_PARTNER_DEFINITION,
    EVENTO_PARTNER_CREADO_DEFINITION,
    EVENTO_PARTNER_ELIMINADO_DEFINITION,
    RawAvroSchema,
    avro_schema,
)

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
