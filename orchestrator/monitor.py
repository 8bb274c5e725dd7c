"""`make monitor`: saga lifecycle events as they happen, one line each.

    python -m orchestrator.monitor
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from datetime import datetime

import pulsar
import pulsar.asyncio as apulsar

from orchestrator.preflight import check_pulsar
from runtime.settings import ConfigError, load_settings

_MARK = {"SagaStarted": "->", "SagaCompleted": "OK", "SagaCompensated": "<-", "SagaFailed": "!!"}


async def _run() -> None:
    cfg = load_settings()
    check_pulsar(cfg)
    client = apulsar.Client(cfg.broker_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
                            **cfg.pulsar_client_options())
    consumer = await client.subscribe(cfg.pulsar_topic(cfg.lifecycle_topic), f"monitor-{uuid.uuid4()}",
                                      consumer_type=pulsar.ConsumerType.Exclusive,
                                      initial_position=pulsar.InitialPosition.Latest)
    print(f"watching {cfg.pulsar_topic(cfg.lifecycle_topic)} on {cfg.broker_url} (Ctrl-C to stop)",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    receiving: asyncio.Future[pulsar.Message] | None = None
    while not stop.is_set():
        receiving = receiving or asyncio.ensure_future(consumer.receive())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if receiving in done:
            msg = receiving.result()
            receiving = None
            ce = json.loads(msg.data())
            await consumer.acknowledge(msg)
            data = ce.get("data") or {}
            when = datetime.now().strftime("%H:%M:%S.%f")[:-3]
            line = (f"{when} {_MARK.get(ce['type'], '  ')} {ce['type']:<16} saga={ce.get('sagaid')} "
                    f"status={data.get('status')} partner={data.get('partner_id')}")
            if data.get("reason"):
                line += f" reason={data['reason']!r}"
            if data.get("needs_attention"):
                line += "  <- NEEDS ATTENTION"
            print(line, flush=True)
    await consumer.unsubscribe()
    await client.close()


def main() -> None:
    try:
        asyncio.run(_run())
    except ConfigError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
