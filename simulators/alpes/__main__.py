"""`python -m simulators.alpes`: the three Alpes services on Pulsar, until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from simulators.alpes.common import AlpesBehaviour, AlpesTopics, log
from simulators.alpes.participants import AlpesParticipants
from simulators.participants import serve_until_signalled

# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.alpes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--broker-url", default=env("BROKER_URL", "pulsar://localhost:6650"))
    p.add_argument("--host", default=env("SIM_HOST", "127.0.0.1"))
    p.add_argument("--integraciones-port", type=int, default=int(env("SIM_INTEGRACIONES_PORT", "5001")))
    p.add_argument("--alianzas-port", type=int, default=int(env("SIM_ALIANZAS_PORT", "8001")))
    p.add_argument("--topic-prefix", default=env("SIM_TOPIC_PREFIX", ""),
                   help="prefix every topic name (default: the real names)")
    p.add_argument("--subscription", default=env("SIM_SUBSCRIPTION", "alpes-sim"))
    p.add_argument("--fail-post-after-save", type=float,
                   default=float(env("SIM_FAIL_POST_AFTER_SAVE", "0.0")))
    p.add_argument("--failed-post-unpublished", action="store_true",
                   default=env("SIM_FAILED_POST_UNPUBLISHED", "") == "1",
                   help="a POST failing after save publishes no PartnerCreado")
    p.add_argument("--fail-delete", type=float, default=float(env("SIM_FAIL_DELETE", "0.0")))
    p.add_argument("--reject-contract", type=float, default=float(env("SIM_REJECT_CONTRACT", "0.2")))
    p.add_argument("--no-contract", type=float, default=float(env("SIM_NO_CONTRACT", "0.0")))
    p.add_argument("--latency", type=float, default=float(env("SIM_LATENCY_S", "0.05")))
    return p


async def _run(args: argparse.Namespace) -> None:
    behaviour = AlpesBehaviour(
        fail_post_after_save=args.fail_post_after_save,
        publish_on_failed_post=not args.failed_post_unpublished,
        fail_delete=args.fail_delete, reject_contract=args.reject_contract, no_contract=args.no_contract,
        latency_s=args.latency)
    topics = AlpesTopics.prefixed(args.topic_prefix) if args.topic_prefix else AlpesTopics()
    sims = AlpesParticipants(args.broker_url, behaviour, topics, host=args.host,
                             integraciones_port=args.integraciones_port, alianzas_port=args.alianzas_port,
                             subscription=args.subscription)
    await sims.start()
    log.info("behaviour: %s", behaviour)
    await serve_until_signalled(sims, "alpes simulators")
    log.info("alpes simulators stopped: %s", dict(sims.counts))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_run(_parser().parse_args()))


if __name__ == "__main__":
    main()
