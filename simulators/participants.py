"""Participant simulators: integraciones (partners) and alianzas (alliances).

Each consumes its command topic and answers on its event topic, like the real services:
- deduplicates commands by id (a re-sent command gets the same reply, same event id);
- fails or stays silent for a configurable share of commands, chosen by a hash of the
  saga id, so a run's outcome is reproducible and countable;
- echoes `correlationid` and, only if asked, `sagaid` (real services may not);
- keeps the partners and alliances it made (`live_alliances` lists the alliances), so a
  test can check that a compensated saga left nothing behind; an undo finds what to undo by the
  id it names or by the command ids that may have made it, and answers an undo of nothing
  with success.

    python -m simulators.participants [--fail-alliance 0.1] [--no-reply-alliance 0.0] ...
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pulsar
import pulsar.asyncio as apulsar

from common.security import pulsar_options_from_env
from wire.cloudevents import encode_event

__all__ = ["Behaviour", "Participants", "main"]

log = logging.getLogger("simulators")
NS = uuid.UUID("0b7f6a0e-7c1d-4d59-9d0e-2f1f7b9a8c11")


def _topic(name: str) -> str:
    return name if "://" in name else f"persistent://public/default/{name}"


def _share(saga_id: str, salt: str) -> float:
    """A stable number in [0, 1) for a saga: the same saga always draws the same outcome."""
    h = hashlib.blake2b(f"{salt}:{saga_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass
class Behaviour:
    latency_s: float = 0.0
    alliance_latency_s: float | None = None  # alianzas' own latency (default: latency_s)
    fail_partner: float = 0.0  # share of CreatePartner answered PartnerCreationFailed
    fail_alliance: float = 0.0  # share of CreateAlliance answered AllianceCreationFailed
    fail_revert: float = 0.0  # share of RevertPartner attempts answered PartnerRevertFailed
    no_reply_partner: float = 0.0
    no_reply_alliance: float = 0.0
    # share of sagas whose CreateAlliance is carried out but every reply to it is lost
    lose_alliance_reply: float = 0.0
    echo_sagaid: bool = False
    duplicate_replies: bool = False  # publish every reply twice (same event id): redelivery
    # Delay each reply (each copy, with duplicate_replies) by a stable pseudo-random time in
    # [0, reorder_window_s): replies overtake one another, as on a redelivering broker.
    reorder_window_s: float = 0.0


class _Made:
    """Command id -> (partner id, resource id) of what each create command made, while it
    lives, and the same by resource id: an undo finds its resource in one lookup, not by a
    scan of everything made (a one-hour soak made hundreds of thousands, and the scan slowed
    the simulated alianzas below the load)."""

    def __init__(self) -> None:
        self._by_command: dict[str, tuple[str, str]] = {}
        self._by_resource: dict[str, set[str]] = {}

    def add(self, command_id: str, partner_id: str, resource_id: str) -> None:
        self._by_command[command_id] = (partner_id, resource_id)
        self._by_resource.setdefault(resource_id, set()).add(command_id)

    def values(self) -> Iterable[tuple[str, str]]:
        return self._by_command.values()

    def undo(self, named: str | None, command_ids: Iterable[str]) -> str | None:
        """Remove what `named` (a resource id) or `command_ids` made; the id undone, or None."""
        found = None
        commands = set(self._by_resource.get(named, ())) if named is not None else set()
        commands.update(c for c in command_ids if c in self._by_command)
        for cmd in commands:
            _, found = self._by_command.pop(cmd)
            owners = self._by_resource.get(found)
            if owners is not None:
                owners.discard(cmd)
                if not owners:
                    del self._by_resource[found]
        return named or found


@dataclass
class Participants:
    broker_url: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    integraciones_commands: str = _topic("integraciones-commands")
    alianzas_commands: str = _topic("alianzas-commands")
    partner_events: str = _topic("partner-events")
    alliance_events: str = _topic("alliance-events")
    # TLS trust and token for Pulsar (None: from PULSAR_TLS_TRUST_CERTS_FILE, PULSAR_AUTH_TOKEN_FILE...)
    client_options: dict[str, Any] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    commands_seen: Counter[str] = field(default_factory=Counter)  # command id -> times received
    _replies: dict[str, bytes | None] = field(default_factory=dict)
    # what each create command made, while it lives (see `_Made`)
    _partners: _Made = field(default_factory=_Made)
    _alliances: _Made = field(default_factory=_Made)
    _client: apulsar.Client | None = None
    _producers: dict[str, apulsar.Producer] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._client = apulsar.Client(self.broker_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                                      **(self.client_options if self.client_options is not None
                                         else pulsar_options_from_env()))
        for topic in (self.partner_events, self.alliance_events):
            self._producers[topic] = await self._client.create_producer(
                topic, batching_enabled=True, batching_max_publish_delay_ms=2, block_if_queue_full=True)
        for topic, name in ((self.integraciones_commands, "integraciones-sim"),
                            (self.alianzas_commands, "alianzas-sim")):
            consumer = await self._client.subscribe(
                topic, name, consumer_type=pulsar.ConsumerType.Shared,
                initial_position=pulsar.InitialPosition.Earliest, negative_ack_redelivery_delay_ms=500)
            self._tasks.append(asyncio.ensure_future(self._serve(consumer)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    @property
    def live_alliances(self) -> set[tuple[str, str]]:
        """(partner id, alliance id) of every alliance made and not cancelled."""
        return set(self._alliances.values())

    @staticmethod
    def _undo(made: _Made, data: dict[str, Any], key: str) -> str | None:
        """Remove what `data` names (`key`'s id, or whatever its `command_ids` made); return
        the id undone, or None when there was nothing (an undo of nothing succeeds)."""
        return made.undo(data.get(key), data.get("command_ids") or ())

    async def publish(self, topic: str, payload: bytes, key: str | None = None) -> None:
        await self._producers[topic].send(payload, partition_key=key)

    async def _publish_late(self, topic: str, payload: bytes, key: str, copy: int) -> None:
        window = self.behaviour.reorder_window_s
        if window:
            await asyncio.sleep(window * _share(hashlib.blake2b(payload).hexdigest(), f"reorder:{copy}"))
        await self.publish(topic, payload, key)

    async def _serve(self, consumer: apulsar.Consumer) -> None:
        pending: set[asyncio.Task[None]] = set()
        while True:
            try:  # Pulsar may be down for a while: wait for the client to reconnect
                msg = await consumer.receive()
            except (pulsar.PulsarException, apulsar.PulsarException) as exc:
                log.warning("simulator: receive failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            t = asyncio.ensure_future(self._handle(consumer, msg))
            pending.add(t)
            t.add_done_callback(pending.discard)

    async def _handle(self, consumer: apulsar.Consumer, msg: pulsar.Message) -> None:
        try:
            ce = json.loads(msg.data())
            latency = self.behaviour.latency_s
            if ce.get("type") in ("CreateAlliance", "CancelAlliance") and \
                    self.behaviour.alliance_latency_s is not None:
                latency = self.behaviour.alliance_latency_s
            if latency:
                await asyncio.sleep(latency)
            reply = self._reply_for(ce)
            if reply is not None:
                topic, payload, key = reply
                copies = 2 if self.behaviour.duplicate_replies else 1
                await asyncio.gather(*(self._publish_late(topic, payload, key, n) for n in range(copies)))
        except Exception:
            log.exception("simulator failed on %s; will be redelivered", msg.message_id())
            await consumer.negative_acknowledge(msg)
            return
        try:
            await consumer.acknowledge(msg)
        except (pulsar.PulsarException, apulsar.PulsarException):
            pass  # redelivered after Pulsar returns, and answered again from _replies

    def _reply_for(self, ce: dict[str, Any]) -> tuple[str, bytes, str] | None:
        cmd_id, ctype, data = ce["id"], ce["type"], ce.get("data") or {}
        self.commands_seen[cmd_id] += 1
        saga_id, corr = ce.get("sagaid", ""), ce.get("correlationid")
        if cmd_id in self._replies:  # a re-sent command: answer exactly as before
            self.counts["duplicate_commands"] += 1
            cached = self._replies[cmd_id]
            to_integraciones = ctype in ("CreatePartner", "RevertPartner")
            topic = self.partner_events if to_integraciones else self.alliance_events
            return (topic, cached, data.get("partner_id") or saga_id) if cached else None
        b = self.behaviour
        echo = saga_id if b.echo_sagaid else None
        event_id = str(uuid.uuid5(NS, f"reply:{cmd_id}"))
        out: tuple[str, str, dict[str, Any]] | None = None
        if ctype == "CreatePartner":
            if _share(saga_id, "no-reply-partner") < b.no_reply_partner:
                self.counts["partner_silent"] += 1
            elif _share(saga_id, "fail-partner") < b.fail_partner:
                self.counts["partner_failed"] += 1
                out = (self.partner_events, "PartnerCreationFailed", {"reason": "simulated failure"})
            else:
                partner_id = str(uuid.uuid5(NS, f"partner:{saga_id}"))
                self._partners.add(cmd_id, partner_id, partner_id)
                self.counts["partner_created"] += 1
                out = (self.partner_events, "PartnerCreated", {"partner_id": partner_id, **{
                    k: data.get(k) for k in ("nombre", "email", "telefono", "direccion")}})
        elif ctype == "RevertPartner":
            if _share(cmd_id, "fail-revert") < b.fail_revert:
                self.counts["revert_failed"] += 1
                out = (self.partner_events, "PartnerRevertFailed",
                       {"partner_id": data.get("partner_id"), "reason": "simulated revert failure"})
            else:
                self.counts["partner_reverted"] += 1
                out = (self.partner_events, "PartnerReverted",
                       {"partner_id": self._undo(self._partners, data, "partner_id")})
        elif ctype == "CreateAlliance":
            if _share(saga_id, "no-reply-alliance") < b.no_reply_alliance:
                self.counts["alliance_silent"] += 1
            elif _share(saga_id, "fail-alliance") < b.fail_alliance:
                self.counts["alliance_failed"] += 1
                out = (self.alliance_events, "AllianceCreationFailed",
                       {"partner_id": data["partner_id"], "reason": "simulated failure"})
            else:
                alliance_id = str(uuid.uuid5(NS, f"alliance:{saga_id}"))
                self._alliances.add(cmd_id, data["partner_id"], alliance_id)
                self.counts["alliance_created"] += 1
                if _share(saga_id, "lose-alliance-reply") < b.lose_alliance_reply:
                    self.counts["alliance_reply_lost"] += 1
                else:
                    out = (self.alliance_events, "AllianceCreated",
                           {"partner_id": data["partner_id"], "alliance_id": alliance_id})
        elif ctype == "CancelAlliance":
            self.counts["alliance_cancelled"] += 1
            out = (self.alliance_events, "AllianceCancelled",
                   {"partner_id": data["partner_id"],
                    "alliance_id": self._undo(self._alliances, data, "alliance_id")})
        else:
            self.counts["unknown_commands"] += 1
            log.warning("simulator: unknown command %s", ctype)
        if out is None:
            self._replies[cmd_id] = None
            return None
        topic, etype, payload = out
        source = "/gestion-de-integraciones" if topic == self.partner_events else "/gestion-de-alianzas"
        body = encode_event(etype, event_id, payload, source=source, saga_id=echo, correlation_id=corr)
        self._replies[cmd_id] = body
        return topic, body, payload.get("partner_id") or saga_id


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--broker-url", default=env("BROKER_URL", "pulsar://localhost:6650"))
    p.add_argument("--latency", type=float, default=float(env("SIM_LATENCY_S", "0.05")))
    p.add_argument("--fail-partner", type=float, default=float(env("SIM_FAIL_PARTNER", "0.05")))
    p.add_argument("--fail-alliance", type=float, default=float(env("SIM_FAIL_ALLIANCE", "0.1")))
    p.add_argument("--fail-revert", type=float, default=float(env("SIM_FAIL_REVERT", "0.1")))
    p.add_argument("--no-reply-partner", type=float, default=float(env("SIM_NO_REPLY_PARTNER", "0.0")))
    p.add_argument("--no-reply-alliance", type=float, default=float(env("SIM_NO_REPLY_ALLIANCE", "0.0")))
    p.add_argument("--lose-alliance-reply", type=float,
                   default=float(env("SIM_LOSE_ALLIANCE_REPLY", "0.0")))
    p.add_argument("--echo-sagaid", action="store_true", default=env("SIM_ECHO_SAGAID", "") == "1")
    return p


async def _run(args: argparse.Namespace) -> None:
    sims = Participants(args.broker_url, Behaviour(
        latency_s=args.latency, fail_partner=args.fail_partner, fail_alliance=args.fail_alliance,
        fail_revert=args.fail_revert, no_reply_partner=args.no_reply_partner,
        no_reply_alliance=args.no_reply_alliance, lose_alliance_reply=args.lose_alliance_reply,
        echo_sagaid=args.echo_sagaid))
    await sims.start()
    log.info("participant simulators up on %s: %s", args.broker_url, sims.behaviour)
    await serve_until_signalled(sims, "simulators")


async def serve_until_signalled(sims: Any, name: str) -> None:
    """Until SIGINT or SIGTERM, log what the started simulators `sims` did every 30 s; then
    stop them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=30)
        except TimeoutError:
            log.info("%s so far: %s", name, dict(sims.counts))
    await sims.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_run(_parser().parse_args()))


if __name__ == "__main__":
    main()
