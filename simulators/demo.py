"""A trickle of demo sagas, and a line for each saga that ends.

Alternates the two ways a saga starts: an HTTP POST to the orchestrator, and a
PartnerCreated published by "integraciones" on its own (with `--participants alpes`: a
partner created straight at integraciones' HTTP API, which publishes its PartnerCreado).
Watches saga-lifecycle and prints how each saga ended, so a newcomer sees sagas complete and compensate.

    python -m simulators.demo [--interval 2] [--web http://127.0.0.1:6066] [--token T]

The HTTP starts carry a bearer token with the `start` role: --token, default $SAGA_TOKEN,
else $OPERATOR_TOKEN (`make run` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import uuid

import aiohttp
import pulsar
import pulsar.asyncio as apulsar

from common.security import pulsar_options_from_env
from wire.cloudevents import encode_event

log = logging.getLogger("demo")


def _topic(name: str) -> str:
    return name if "://" in name else f"persistent://public/default/{name}"


async def _start_http(session: aiohttp.ClientSession, web: str, n: int, auth: dict[str, str]) -> None:
    # A fresh email each time: integraciones refuses one it has seen (409 EMAIL_EXISTENTE).
    body = {"nombre": f"Demo Partner {n}", "email": f"demo{n}-{uuid.uuid4().hex[:8]}@example.com",
            "telefono": "+57 300 000 0000",
            "direccion": "Calle 1 # 2-3", "correlation_id": str(uuid.uuid4())}
    try:
        async with session.post(f"{web}/api/v1/saga/partner-creation", json=body, headers=auth) as r:
            answer = await r.json()
            log.info("POST partner-creation -> %s %s", r.status, answer.get("saga_id", answer))
            if r.status in (401, 403):
                log.warning("the orchestrator refused the demo's token (%s): set SAGA_TOKEN or "
                            "OPERATOR_TOKEN to a token with the start role, or pass --token", r.status)
    except aiohttp.ClientError as exc:
        log.warning("orchestrator web not reachable yet at %s: %s", web, exc)


async def _watch(consumer: apulsar.Consumer) -> None:
    while True:
        msg = await consumer.receive()
        ce = json.loads(msg.data())
        await consumer.acknowledge(msg)
        data = ce.get("data") or {}
        extra = f" reason={data['reason']!r}" if data.get("reason") else ""
        log.info("saga %s %s (status %s)%s", ce.get("sagaid"), ce["type"], data.get("status"), extra)


async def _run(args: argparse.Namespace) -> None:
    client = apulsar.Client(args.broker_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                            **pulsar_options_from_env())
    producer = await client.create_producer(_topic(args.partner_events))
    consumer = await client.subscribe(_topic(args.lifecycle), f"demo-{uuid.uuid4()}",
                                      consumer_type=pulsar.ConsumerType.Exclusive,
                                      initial_position=pulsar.InitialPosition.Latest)
    watcher = asyncio.ensure_future(_watch(consumer))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for n in itertools.count(1):
            if n % 2:
                await _start_http(session, args.web, n, auth)
            elif args.participants == "alpes":
                body = {"nombre": f"Demo Partner {n}", "email": f"own{n}-{uuid.uuid4().hex[:8]}@example.com"}
                try:
                    async with session.post(f"{args.integraciones}/api/v1/partners", json=body) as r:
                        log.info("POST integraciones /api/v1/partners -> %s", r.status)
                except aiohttp.ClientError as exc:
                    log.warning("integraciones not reachable at %s: %s", args.integraciones, exc)
            else:
                partner_id = str(uuid.uuid4())
                await producer.send(encode_event(
                    "PartnerCreated", str(uuid.uuid4()),
                    {"partner_id": partner_id, "nombre": f"Demo Partner {n}",
                     "email": f"demo{n}@example.com"},
                    source="/gestion-de-integraciones"), partition_key=partner_id)
                log.info("published PartnerCreated for partner %s", partner_id)
            try:
                await asyncio.wait_for(stop.wait(), timeout=args.interval)
                break
            except TimeoutError:
                pass
    watcher.cancel()
    await consumer.unsubscribe()
    await client.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[demo] %(asctime)s %(message)s")
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker-url", default=env("BROKER_URL", "pulsar://localhost:6650"))
    p.add_argument("--web", default=env("DEMO_WEB_URL", f"http://127.0.0.1:{env('WEB_PORT', '6066')}"))
    p.add_argument("--token", default=env("SAGA_TOKEN") or env("OPERATOR_TOKEN"),
                   help="bearer token with the start role (default $SAGA_TOKEN, else $OPERATOR_TOKEN)")
    p.add_argument("--interval", type=float, default=float(env("DEMO_INTERVAL_S", "2")))
    p.add_argument("--partner-events", default=env("PARTNER_EVENTS_TOPIC", "partner-events"))
    p.add_argument("--lifecycle", default=env("SAGA_LIFECYCLE_TOPIC", "saga-lifecycle"))
    p.add_argument("--participants", choices=("contract", "alpes"), default=env("PARTICIPANTS", "contract"))
    p.add_argument("--integraciones", default=env("INTEGRACIONES_API_URL", "http://127.0.0.1:5001"))
    asyncio.run(_run(p.parse_args()))


if __name__ == "__main__":
    main()
