"""The bridges in a process of their own, as the worker starts them (OUTBOX_BRIDGE=process,
INBOUND_BRIDGE=process, the defaults):

    python -m bridges outbox [--report]

It sends the sagas' commands from the Kafka outbox on to Pulsar and the participants' APIs
(bridges/outbox.py), with the worker's settings. As the worker's child (--report) it also
brings the participants' Pulsar events into Kafka (bridges/pulsar_inbound.py) when
INBOUND_BRIDGE=process, and forwards the outbox only when OUTBOX_BRIDGE=process. It runs no
Faust worker: only the Faust app's producer, through which its Kafka writes go. With
--report it follows the outbox partitions the worker tells it on stdin, one JSON line after
each rebalance (`{"partitions": [0, 3]}`: those of the sagas the worker actively owns), ends
when stdin closes (the worker is gone), and prints its counters, gauges, failing Pulsar topics
and subscribed ones as one JSON line every REPORT_EVERY_S on stdout (the worker shows them in
/metrics and /ready). Without it, it forwards every outbox partition. A send round that fails
past its budget twice ends the process (exit code 70), and so does an inbound topic whose
pump failed past its RETRY_BRIDGE_RESTART budget: the worker starts another, which reads the
records not committed (and Pulsar the messages not acknowledged) again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable

from runtime.settings import ConfigError

__all__ = ["REPORT_EVERY_S", "main"]

log = logging.getLogger("bridges.outbox")

#: How often `outbox --report` prints.
REPORT_EVERY_S = 0.5
#: The exit code of a bridge that gave up on a round (bridges.pulsar_outbound.RoundFailed).
GAVE_UP = 70


async def listen(follow: Callable[[list[int]], None]) -> None:
    """The worker's lines on stdin: which outbox partitions to follow. Returns at EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async for line in reader:
        follow([int(p) for p in json.loads(line)["partitions"]])
    log.info("outbox bridge: the worker closed its end; stopping")


async def serve(report: bool) -> None:
    from bridges.alpes import ALPES
    from bridges.outbox import OUTBOX_BRIDGE
    from bridges.pulsar_inbound import LINK, SUBSCRIBE_ERRORS, SUBSCRIBED, run_inbound
    from bridges.pulsar_outbound import FAILING_TOPICS, OUTBOUND, open_producers
    from runtime.app import app, cfg
    from runtime.metrics import METRICS

    async def give_up(exc: BaseException) -> None:
        log.critical("outbox bridge: %s; exiting", exc)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(GAVE_UP)

    OUTBOUND._crash = give_up

    async def reporter() -> None:
        while True:
            labeled = [[name, dict(labels), value] for (name, labels), value in METRICS.counters.items()]
            line = {"counters": {}, "labeled": labeled, "gauges": METRICS.gauges,
                    "failing_topics": dict(FAILING_TOPICS), "subscribed": sorted(SUBSCRIBED),
                    "subscribe_errors": dict(SUBSCRIBE_ERRORS)}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(REPORT_EVERY_S)

    await app.maybe_start_producer()
    outbox = not report or cfg.outbox_bridge == "process"
    opening = asyncio.create_task(open_producers())  # done once they are open
    tasks = [asyncio.create_task(OUTBOUND.run()), asyncio.create_task(OUTBOX_BRIDGE.run())] if outbox else []
    if report:
        tasks.append(asyncio.create_task(reporter()))
        tasks.append(asyncio.create_task(listen(OUTBOX_BRIDGE.follow)))
        if cfg.inbound_bridge == "process":
            tasks.append(asyncio.create_task(run_inbound()))
    else:
        OUTBOX_BRIDGE.follow(range(cfg.topic_partitions))
    try:
        # Until a task fails, or the worker closes stdin (listen returns).
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (*tasks, opening):
            task.cancel()
        await ALPES.calls.close()
        await LINK.close()
        await app.producer.stop()


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] != "outbox":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    try:
        asyncio.run(serve("--report" in sys.argv[2:]))
    except ConfigError as exc:
        print(f"outbox bridge: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
