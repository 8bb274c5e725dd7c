"""The fault harness: sagas under a steady load while something breaks, and how they ended.

Each scenario gets a world of its own (unique Kafka app id and Pulsar topics): two workers
sharing the partitions, the participant simulators (simulators/participants.py; a share of
alliances failing, a share of alianzas silent), taps on the lifecycle and dead-letter
topics. A load of PartnerCreated events is published at a steady rate; the fault happens
while it runs; then the harness waits for every saga to end and counts, per saga, from the
lifecycle notices (deduplicated by CloudEvents id, as any consumer does):
- ended as expected: one terminal notice, the one the simulators' choices call for
  (`expected_end`: a failing or silent alianzas means SagaCompensated, else SagaCompleted);
- ended wrongly: one terminal notice, another one;
- not ended: none by the time the harness gives up;
- ended twice: more than one terminal notice.
Recovery time: from the end of the fault (the kill, or the broken component answering
again) until a probe saga started on every partition of the saga stream has been started
by a worker (its SagaStarted notice): "all partitions served again". Timings are printed;
the tests (tests/e2e/test_faults.py) assert outcomes only. A scenario that is not clean keeps
its workers' data and logs, and writes every Kafka record of the first five sagas that did not
end right to `trace.txt` in its folder (chaos/trace.py) before its topics are deleted;
CHAOS_KEEP=1 keeps every scenario's folder.

    uv run python -m chaos [--sagas-per-s 40] [--seconds 30] [--only kill,kafka,...]   (make chaos)
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiokafka.partitioner import DefaultPartitioner

from benchmarks.report import drop_run_leftovers
from chaos.trace import trace_sagas
from domain import ids
from simulators.participants import Behaviour, Participants, _share
from tests.support.flows import TERMINAL_EVENTS, partner_created
from tests.support.pulsar import Tap, connect
from tests.support.stack import KAFKA_URL, PULSAR_URL, require_stack
from tests.support.worker import ROOT, Names, Worker

__all__ = ["LOAD_BEHAVIOUR", "Row", "World", "expected_end", "outcome", "print_table"]

log = logging.getLogger("chaos")

#: The participants under every scenario: some alliances fail, some alianzas never answer.
LOAD_BEHAVIOUR = Behaviour(latency_s=0.01, fail_alliance=0.1, no_reply_alliance=0.05)
#: Short timeouts, so that silent alianzas compensate within a scenario.
WORKER_ENV = {"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "3", "SAGA_MAX_ATTEMPTS": "2", "SAGA_BACKOFF_S": "0.5",
              "SAGA_REPLY_TIMEOUT_S": "5"}
PARTITIONS = 8
#: How long the load generator keeps re-sending an event Pulsar did not take.
PUBLISH_FOR_S = 180.0


def expected_end(saga_id: str, behaviour: Behaviour) -> str:
    """The terminal notice a partner-started saga must end with, given the simulators' choices."""
    if _share(saga_id, "no-reply-alliance") < behaviour.no_reply_alliance:
        return "SagaCompensated"  # every CreateAlliance times out: undone (maybe done), reverted
    if _share(saga_id, "fail-alliance") < behaviour.fail_alliance:
        return "SagaCompensated"
    return "SagaCompleted"


@dataclass
class Row:
    scenario: str
    started: int
    as_expected: int
    wrongly: int
    not_ended: int
    twice: int
    recovery_s: float | None = None
    note: str = ""
    pause_s: float | None = None  # the longest time no saga moved (the upgrade test)
    odd: list[str] = field(default_factory=list)  # a few sagas that did not end as expected

    @property
    def clean(self) -> bool:
        return self.wrongly == 0 and self.not_ended == 0 and self.twice == 0 and self.started > 0


def outcome(scenario: str, started: dict[str, str], lifecycle: Tap) -> Row:
    """Count how the `started` sagas (saga id -> expected terminal notice) ended."""
    terminal: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    for m in list(lifecycle.messages):
        ev = m.json()
        if ev.get("type") in TERMINAL_EVENTS:
            terminal.setdefault(ev["sagaid"], set()).add(ev["id"])
            types[ev["id"]] = ev["type"]
    row = Row(scenario, len(started), 0, 0, 0, 0)
    odd: list[str] = []
    for saga_id, expected in started.items():
        seen = terminal.get(saga_id, set())
        if not seen:
            row.not_ended += 1
            odd.append(f"{saga_id} not ended")
        elif len(seen) > 1:
            row.twice += 1
            odd.append(f"{saga_id} ended twice: {sorted(types[i] for i in seen)}")
        elif types[next(iter(seen))] == expected:
            row.as_expected += 1
        else:
            row.wrongly += 1
            odd.append(f"{saga_id} ended {types[next(iter(seen))]}, expected {expected}")
    row.odd = odd[:5]
    return row


def print_table(rows: list[Row]) -> None:
    head: tuple[str, ...] = ("scenario", "sagas started", "ended as expected", "ended wrongly", "not ended",
                             "ended twice", "recovery time")
    body: list[tuple[str, ...]] = [
        (r.scenario, str(r.started), str(r.as_expected), str(r.wrongly), str(r.not_ended), str(r.twice),
         "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s") for r in rows]
    if any(r.pause_s is not None for r in rows):
        head = (*head, "longest pause")
        body = [(*line, "-" if r.pause_s is None else f"{r.pause_s:.1f} s") for line, r in zip(body, rows,
                                                                                              strict=True)]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    for line in (head, tuple("-" * w for w in widths), *body):
        print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)))
    for r in rows:
        if r.note:
            print(f"{r.scenario}: {r.note}")
        for odd in r.odd:
            print(f"{r.scenario}: {odd}")


STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))


def stack(action: str, component: str) -> None:
    """Stop or start one component of the local stack (stack/stack.sh)."""
    subprocess.run([str(ROOT / "stack" / "stack.sh"), action, component], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """Where Faust's producer (aiokafka's default partitioner, murmur2) puts a key."""
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


def probe_partners() -> list[str]:
    """One new partner per partition of the saga stream: their sagas land on every partition."""
    found: dict[int, str] = {}
    while len(found) < PARTITIONS:
        pid = f"probe-{uuid.uuid4()}"
        found.setdefault(_partition_of(ids.saga_id_for_partner(pid).encode()), pid)
    return list(found.values())


@dataclass
class World:
    """One scenario's workers, simulators and taps, on topics of its own."""

    behaviour: Behaviour = field(default_factory=lambda: Behaviour(**vars(LOAD_BEHAVIOUR)))
    workers_n: int = 2
    worker_root: Path = ROOT  # the checkout the first workers run (an older release's, to upgrade)
    env: dict[str, str] = field(default_factory=dict)
    names: Names = field(default_factory=Names)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-")))
    workers: list[Worker] = field(default_factory=list)
    sims: Participants | None = None
    lifecycle: Tap | None = None
    dead: Tap | None = None
    started: dict[str, str] = field(default_factory=dict)  # saga id -> expected end
    keep: bool = True  # the workers' data and logs, after the scenario (run() clears it when clean)
    _client: Any = None
    _sends: list[asyncio.Future[Any]] = field(default_factory=list)

    @property
    def kafka_bootstrap(self) -> str:
        """The scenario's Kafka brokers as host:port,host:port (its KAFKA_BROKER_URL)."""
        url = self.env.get("KAFKA_BROKER_URL", KAFKA_URL)
        return ",".join(f"{urlsplit(u).hostname}:{urlsplit(u).port}" for u in url.split(";"))

    async def __aenter__(self) -> World:
        require_stack()
        self.workers = [Worker(self.names, self.folder / f"data-{n}", name=f"w{n}", root=self.worker_root,
                               env={**WORKER_ENV, **self.env}).start() for n in range(self.workers_n)]
        self._client = connect(PULSAR_URL)
        n = self.names
        self.sims = Participants(PULSAR_URL, self.behaviour, integraciones_commands=n.integraciones_commands,
                                 alianzas_commands=n.alianzas_commands, partner_events=n.partner_events,
                                 alliance_events=n.alliance_events)
        await self.sims.start()
        self.lifecycle = await Tap(self._client, n.lifecycle).start()
        self.dead = await Tap(self._client, n.dead_letters).start()
        await asyncio.gather(*(w.wait_ready(timeout=120) for w in self.workers))
        await asyncio.sleep(3)  # let the group settle with every member
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self.workers:
            w.kill()
        # Its topics and snapshot schema: a one-node broker slows down with the thousands of
        # partitions earlier scenarios would leave.
        await drop_run_leftovers(self.names.app_id, self.kafka_bootstrap)
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        for tap in (self.lifecycle, self.dead):
            if tap is not None:
                await tap.stop()
        if self.sims is not None:
            await self.sims.stop()
        if self._client is not None:
            await self._client.close()

    def publish(self, payload: bytes, key: str | None = None) -> asyncio.Future[Any]:
        """Publish on the partner-events topic without waiting, as a participant that retries
        until Pulsar has its event: while Pulsar is down (or coming back) sends time out, and
        are sent again."""
        assert self.sims is not None
        producer = self.sims._producers[self.sims.partner_events]

        async def until_sent() -> None:
            deadline = time.monotonic() + PUBLISH_FOR_S
            while True:
                try:
                    await producer.send(payload, partition_key=key)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1.0)

        fut = asyncio.ensure_future(until_sent())
        self._sends.append(fut)
        return fut

    async def load(self, rate: float, seconds: float, *, twice: bool = False, shuffle_s: float = 0.0,
                   seed: int = 7) -> None:
        """Start `rate` sagas a second for `seconds` (PartnerCreated events, as integraciones
        publishes them). `twice`: every event is published twice; `shuffle_s`: the events of
        each window of that length go out in a shuffled order."""
        rng = random.Random(seed)
        tick, n = 0.1, 0
        window: list[tuple[bytes, str]] = []
        window_started = time.monotonic()
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < seconds:
            due = int(rate * elapsed)
            for _ in range(due - n):
                pid = str(uuid.UUID(int=rng.getrandbits(128)))
                saga_id = ids.saga_id_for_partner(pid)
                self.started[saga_id] = expected_end(saga_id, self.behaviour)
                payload = partner_created(pid, n)
                window += [(payload, pid)] * (2 if twice else 1)
                n += 1
            if not shuffle_s or time.monotonic() - window_started >= shuffle_s:
                rng.shuffle(window)
                for payload, pid in window:
                    self.publish(payload, pid)
                window, window_started = [], time.monotonic()
            await asyncio.sleep(tick)
        rng.shuffle(window)
        for payload, pid in window:
            self.publish(payload, pid)

    async def settle(self, within_s: float) -> None:
        """Wait until every started saga ended (or `within_s` passed) and every publish is done."""
        await asyncio.gather(*self._sends, return_exceptions=True)
        failed = [f for f in self._sends if f.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} PartnerCreated events were never published: "
                               f"{failed[0].exception()!r}")
        assert self.lifecycle is not None
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if outcome("", self.started, self.lifecycle).not_ended == 0:
                return
            await asyncio.sleep(0.5)

    async def recovery_after(self, fault_end: float, within_s: float = 120.0) -> float | None:
        """Seconds from `fault_end` (time.time()) until a batch of probe sagas, one on each
        partition, was started by the workers; probe batches go out every half second."""
        assert self.lifecycle is not None
        batches: list[tuple[float, set[str]]] = []
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            pids = probe_partners()
            batches.append((time.time(), {ids.saga_id_for_partner(p) for p in pids}))
            for pid in pids:
                self.publish(partner_created(pid, 0), pid)
            started_at: dict[str, float] = {}
            for m in list(self.lifecycle.messages):
                ev = m.json()
                if ev.get("type") == "SagaStarted":
                    started_at.setdefault(ev["sagaid"], m.at)
            done = [max(started_at[s] for s in sagas) for _, sagas in batches
                    if all(s in started_at for s in sagas)]
            if done:
                return max(0.0, min(done) - fault_end)
            await asyncio.sleep(0.5)
        return None


async def trace(world: World, scenario: str, saga_ids: list[str]) -> None:
    """Keep what Kafka and the lifecycle tap hold about sagas that did not end right, before
    the scenario's topics are deleted (chaos/trace.py)."""
    bootstrap = world.kafka_bootstrap
    try:
        out = await trace_sagas(world.names.app_id, saga_ids, bootstrap, world.folder / "trace.txt")
        assert world.lifecycle is not None
        with out.open("a") as f:
            for m in list(world.lifecycle.messages):
                ev = m.json()
                if ev.get("sagaid") in saga_ids:
                    f.write(f"lifecycle at {m.at:.3f}: {ev.get('sagaid')} {ev.get('type')} {ev.get('id')}\n")
        log.error("%s: the Kafka records of %d sagas that did not end right are in %s",
                  scenario, len(saga_ids), out)
    except Exception as exc:  # a diagnosis must not hide the scenario's own outcome
        log.error("%s: could not trace the sagas: %r", scenario, exc)


Fault = Callable[[World], Awaitable[tuple[float, str]]]


async def kill_worker(world: World) -> tuple[float, str]:
    victim = world.workers[-1]
    victim.kill(signal.SIGKILL)
    return time.time(), f"SIGKILL to worker {victim.name}"


def outage(component: str, seconds: float) -> Fault:
    async def fault(world: World) -> tuple[float, str]:
        await asyncio.to_thread(stack, "down", component)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(stack, "up", component)
        return time.time(), f"{component} down {seconds:g} s"
    return fault


async def run(scenario: str, fault: Fault | None, *, rate: float, seconds: float, settle_s: float = 180.0,
              world: World | None = None, twice: bool = False, shuffle_s: float = 0.0,
              after: Callable[[World, float], Awaitable[str]] | None = None) -> Row:
    """One scenario: load for `seconds`, the fault a third of the way in, then count."""
    async with (world or World()) as w:
        load = asyncio.ensure_future(w.load(rate, seconds, twice=twice, shuffle_s=shuffle_s))
        note = ""
        recovery = None
        if fault is not None:
            await asyncio.sleep(seconds / 3)
            fault_end, note = await fault(w)
            recovery = await w.recovery_after(fault_end)
        await load
        await w.settle(settle_s)
        if after is not None and fault is not None:
            note = f"{note}; {await after(w, fault_end)}"
        assert w.lifecycle is not None  # tapped on entering the World
        row = outcome(scenario, w.started, w.lifecycle)
        row.recovery_s, row.note = recovery, note
        w.keep = not row.clean or bool(os.environ.get("CHAOS_KEEP"))
        for worker in w.workers if w.keep else ():
            log.error("%s: worker %s log at %s", scenario, worker.name, worker.log_path)
        if not row.clean:
            await trace(w, scenario, [odd.split(" ", 1)[0] for odd in row.odd])
        return row
