"""The scenarios of the fault harness (chaos/harness.py), each a function of its size, so that
`make chaos` runs them at full size and tests/e2e/test_faults.py reduced."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg

from chaos.harness import STACK_DIR, Row, World, kill_worker, outage, run, stack
from chaos.hostile import hostile_messages
from domain.privacy import redacted_message
from tests.support.stack import PG_URL

__all__ = ["SCENARIOS", "Size"]


@dataclass(frozen=True)
class Size:
    rate: float = 40.0  # sagas started per second
    seconds: float = 30.0  # of load
    outage_s: float = 10.0  # Kafka, Pulsar
    pg_outage_s: float = 30.0
    hostile: int = 10_000


async def kill_one(size: Size) -> Row:
    return await run("kill -9 one worker", kill_worker, rate=size.rate, seconds=size.seconds)


def _outlasting(size: Size) -> World:
    """A world whose step timeouts outlast the outage and the broker's restart: a saga that
    gives up on a step because a broker was down ends compensated, rightly, but not as the
    participants' choices say (Apache Pulsar standalone takes 10-20 s to come back, and the
    clients' reconnection backoff adds to that)."""
    return World(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": f"{size.outage_s + 30:g}"})


async def kafka(size: Size) -> Row:
    return await run(f"Kafka down {size.outage_s:g} s", outage("kafka", size.outage_s),
                     rate=size.rate, seconds=size.seconds, world=_outlasting(size))


async def pulsar(size: Size) -> Row:
    return await run(f"Pulsar down {size.outage_s:g} s", outage("pulsar", size.outage_s),
                     rate=size.rate, seconds=size.seconds, world=_outlasting(size))


async def _live_versions(world: World) -> dict[str, int]:
    """Each started saga's version in the live table (the status endpoint of any worker)."""
    alive = next(w for w in world.workers if w.proc is not None and w.proc.poll() is None)
    out: dict[str, int] = {}
    sem = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession, saga_id: str) -> None:
        async with sem, session.get(f"{alive.url}/api/v1/saga/status/{saga_id}", headers=alive.auth()) as r:
            if r.status == 200:
                out[saga_id] = int((await r.json())["version"])

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(one(session, s) for s in world.started))
    return out


async def _snapshot_versions(world: World) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(PG_URL) as conn:
        cur = await conn.execute(
            f'SELECT saga_id, version FROM "{world.names.app_id}".saga_snapshots')  # a test's own schema
        return {r[0]: int(r[1]) for r in await cur.fetchall()}


async def snapshots_converge(world: World, back_at: float, within_s: float = 120.0) -> str:
    """How long after PostgreSQL came back the snapshots equalled the live table."""
    live = await _live_versions(world)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            snaps = await _snapshot_versions(world)
        except psycopg.Error:
            snaps = {}
        behind = [s for s, v in live.items() if snaps.get(s) != v]
        if not behind:
            return f"snapshots equal the tables {time.time() - back_at:.1f} s after PostgreSQL was back"
        await asyncio.sleep(0.5)
    raise AssertionError(f"{len(behind)} of {len(live)} snapshots still differ from the tables "
                         f"{within_s:g} s after the sagas ended")


async def postgres(size: Size) -> Row:
    return await run(f"PostgreSQL down {size.pg_outage_s:g} s", outage("postgres", size.pg_outage_s),
                     rate=size.rate, seconds=size.seconds, after=snapshots_converge)


async def duplicated_and_reordered(size: Size) -> Row:
    """Every inbound event twice, in an order shuffled within 1 s windows: the PartnerCreated
    events the harness publishes, and every participant reply (simulators: duplicate_replies
    and reorder_window_s). The expected ends are the same as an undisturbed run's: they are
    a function of each saga's id and the simulators' choices (harness.expected_end)."""
    world = World()
    world.behaviour.duplicate_replies = True
    world.behaviour.reorder_window_s = 1.0
    return await run("every event twice, reordered in 1 s", None, rate=size.rate, seconds=size.seconds,
                     world=world, twice=True, shuffle_s=1.0)


async def hostile(size: Size) -> Row:
    """Hostile messages interleaved with the load on both inbound topics; every one must be
    dead-lettered with a reason, and no saga may end otherwise than expected."""
    world = World()
    notes: list[str] = []

    async def inject(w: World, *_: Any) -> tuple[float, str]:
        assert w.sims is not None
        messages = await asyncio.to_thread(hostile_messages, size.hostile, list(w.started)[:50])
        topics = [w.sims.partner_events, w.sims.alliance_events]
        t0 = time.monotonic()
        for n, payload in enumerate(messages):
            producer = w.sims._producers[topics[n % 2]]
            w._sends.append(asyncio.ensure_future(producer.send(payload)))  # Pulsar is up
            if n % 200 == 199:
                await asyncio.sleep(0.05)
        await asyncio.gather(*w._sends[-len(messages):])
        assert w.dead is not None
        # As a dead letter shows each: with the partner's personal data masked (the very bytes
        # sent when there is none; agents/dead_letters.py).
        expected = {redacted_message(m) for m in messages}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = {m.data for m in w.dead.messages}
            if expected <= seen:
                break
            await asyncio.sleep(0.5)
        seen_msgs = [m for m in w.dead.messages if m.data in expected]
        missing = len(expected - {m.data for m in seen_msgs})
        no_reason = sum(1 for m in seen_msgs if not m.properties.get("reason"))
        notes.append(f"{len(messages)} hostile messages ({len(expected)} distinct) in "
                     f"{time.monotonic() - t0:.1f} s; dead-lettered with a reason: "
                     f"{len(expected) - missing}, missing: {missing}, without a reason: {no_reason}")
        if missing or no_reason:
            examples = [m[:160] for m in list(expected - {m.data for m in seen_msgs})[:3]]
            raise AssertionError(f"{notes[-1]}; e.g. {examples}")
        return time.time(), "hostile"

    row = await run(f"{size.hostile:,} hostile messages", inject, rate=size.rate, seconds=size.seconds,
                    world=world)
    row.recovery_s, row.note = None, notes[0] if notes else row.note
    return row


#: The three-node cluster of `stack/stack.sh up kafka3`.
KAFKA3 = ";".join(f"kafka://127.0.0.1:{19092 + 2 * n}" for n in range(3))


async def kafka3(size: Size) -> Row:
    """The shape users grow into: three KRaft brokers, replication factor 3,
    min.insync.replicas 2; one broker killed with SIGKILL under load."""
    await asyncio.to_thread(stack, "up", "kafka3")
    try:
        world = World(env={"KAFKA_BROKER_URL": KAFKA3, "TOPIC_REPLICATION_FACTOR": "3"})

        async def kill_broker(_: World) -> tuple[float, str]:
            pid = int((STACK_DIR / "run" / "kafka3-2.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            return time.time(), "SIGKILL to Kafka broker 2 of 3"

        return await run("3 Kafka brokers, one killed", kill_broker, rate=size.rate, seconds=size.seconds,
                         world=world)
    finally:
        await asyncio.to_thread(stack, "down", "kafka3")


SCENARIOS: dict[str, Callable[[Size], Awaitable[Row]]] = {
    "kill": kill_one, "kafka": kafka, "pulsar": pulsar, "postgres": postgres,
    "duplicates": duplicated_and_reordered, "hostile": hostile, "kafka3": kafka3,
}
