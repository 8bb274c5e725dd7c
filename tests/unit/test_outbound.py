"""The outbound bridge's rounds (bridges/pulsar_outbound.Outbound) with Pulsar, the dead-letter
writer and the worker's crash replaced by fakes: nothing here needs a broker.

What it checks (issue #20, defects 3 and 4): a round that fails (its dead-lettering raises)
is retried until its events are acknowledged, or, failing past its budget, makes the worker
not ready and then crashes it, every failure counted; and a saga's commands reach Pulsar in
the order they were handed over even when an earlier round keeps retrying, while other
sagas' commands go on."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import _pulsar
import pulsar
import pytest

import bridges.pulsar_outbound as outbound
from common.retry import Policy
from domain.messages import Command, Destination
from runtime.metrics import METRICS

# common/retry.py passes tenacity's `initial`, deprecated in the tenacity of the lock (a
# DeprecationWarning, which pytest's settings turn into an error).

#: Short waits, so that a test takes a fraction of a second.
FAST_SEND = Policy("pulsar-send", 0.01, 0.02)
FAST_ROUND = Policy("outbound-round", 0.01, 0.02, budget_s=0.3)
TIMEOUT = pulsar.PulsarException(_pulsar.Result.Timeout)
TERMINATED = pulsar.PulsarException(_pulsar.Result.TopicTerminated)


def _command(saga: str, type_: str, destination: Destination = Destination.ALIANZAS) -> Command:
    return Command(command_id=str(uuid.uuid4()), saga_id=saga, correlation_id=saga,
                   destination=destination, type=type_, data={})


class FakeLink:
    """Pulsar: records every send (each call one batch) and what it took, in order, by command
    id; `fail` decides each message's fate (None: taken)."""

    def __init__(self, fail: Callable[[str], Exception | None] = lambda _: None) -> None:
        self.fail = fail
        self.batches: list[list[str]] = []
        self.taken: list[str] = []
        self.failed = asyncio.Event()  # set at the first failed message

    async def send_batch(self, items: Any) -> list[Exception | None]:
        await asyncio.sleep(0)
        ids = [json.loads(payload)["id"] for _, payload, _, _ in items]
        self.batches.append(ids)
        errors = [self.fail(i) for i in ids]
        self.taken += [i for i, err in zip(ids, errors, strict=True) if err is None]
        if any(errors):
            self.failed.set()
        return errors

    def drop_producer_if_closed(self, topic: str, error: BaseException) -> None:
        pass


class World:
    def __init__(self, link: FakeLink, dead_letter_fails: Callable[[int], bool] = lambda _: False) -> None:
        self.link = link
        self.dead: list[str] = []  # message ids dead-lettered (Kafka acknowledged them)
        self.dead_letter_tries = 0
        self.dead_letter_fails = dead_letter_fails
        self.crashed: list[BaseException] = []
        self.acked: list[str] = []
        self.outbound = outbound.Outbound(100, link=link, dead_letter=self.dead_letter, crash=self.crash,
                                          send_policy=FAST_SEND, round_policy=FAST_ROUND)

    async def dead_letter(self, payload: bytes, reason: str, *, message_id: str = "", **_: Any) -> Any:
        self.dead_letter_tries += 1
        if self.dead_letter_fails(self.dead_letter_tries):
            raise RuntimeError("Kafka: NotLeaderForPartition")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        self.dead.append(message_id)
        return fut

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)

    async def hand_over(self, name: str, *commands: Command) -> None:
        async def ack() -> None:
            self.acked.append(name)

        await self.outbound.send(commands, outbound.Outbound.encode(commands), ack)

    async def wait_for(self, what: Callable[[], object]) -> None:
        """Until `what()` holds, for at most 10 s (long enough for the old code's fixed
        backoff to reach the assertions after it)."""
        for _ in range(2000):
            if what():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("not within 10 s")


@pytest.fixture
async def running() -> AsyncIterator[Callable[[World], None]]:
    """Starts a world's sender task; stops it and its rounds at the end, and leaves /ready's
    failing topics as they were."""
    tasks: list[asyncio.Task[None]] = []
    failing = dict(outbound.FAILING_TOPICS)

    def start(world: World) -> None:
        tasks.append(asyncio.create_task(world.outbound.run()))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    outbound.FAILING_TOPICS.clear()
    outbound.FAILING_TOPICS.update(failing)


def _round_failures() -> int:
    return METRICS.counters[("outbound_round_failures_total", ())]


# --- defect 3: a round that fails --------------------------------------------------------
async def test_a_round_whose_dead_lettering_fails_is_retried_until_its_events_are_acknowledged(
        running: Callable[[World], None]) -> None:
    refused, fine = _command("saga-r", "CreateAlliance"), _command("saga-f", "CreateAlliance")
    world = World(FakeLink(lambda i: TERMINATED if i == refused.command_id else None),
                  dead_letter_fails=lambda attempt: attempt <= 2)  # Kafka fails twice
    running(world)
    before = _round_failures()

    await world.hand_over("e1", refused)
    await world.hand_over("e2", fine)
    await world.wait_for(lambda: set(world.acked) == {"e1", "e2"})

    assert world.dead == [refused.command_id]  # dead-lettered (acknowledged by Kafka) before its ack
    assert _round_failures() - before == 2  # every failure counted
    assert world.crashed == [] and outbound.ROUND_FAILING not in outbound.FAILING_TOPICS


async def test_a_round_that_keeps_failing_makes_the_worker_not_ready_then_crashes_it(
        running: Callable[[World], None]) -> None:
    refused = _command("saga-r", "CreateAlliance")
    world = World(FakeLink(lambda _: TERMINATED), dead_letter_fails=lambda _: True)
    running(world)
    before = _round_failures()

    await world.hand_over("e1", refused)
    # Past its budget (0.3 s): not ready, /ready naming why.
    await world.wait_for(lambda: outbound.ROUND_FAILING in outbound.FAILING_TOPICS)
    assert "NotLeaderForPartition" in outbound.FAILING_TOPICS[outbound.ROUND_FAILING]
    assert world.crashed == []
    # Past it twice: the worker crashes, the event unacknowledged (its partition's next owner
    # replays it).
    await world.wait_for(lambda: world.crashed)
    assert isinstance(world.crashed[0], outbound.RoundFailed)
    assert world.acked == [] and world.dead == []
    assert _round_failures() - before >= 3


async def test_an_acknowledgement_that_fails_is_tried_again(running: Callable[[World], None]) -> None:
    world = World(FakeLink())
    running(world)
    tries = 0

    async def ack() -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise RuntimeError("commit failed")
        world.acked.append("e1")

    cmd = _command("saga-a", "CreateAlliance")
    await world.outbound.send([cmd], outbound.Outbound.encode([cmd]), ack)
    await world.wait_for(lambda: world.acked == ["e1"])
    assert world.crashed == []


# --- defect 4: an undo must not overtake its step -----------------------------------------
async def test_a_sagas_later_command_waits_for_its_earlier_one_while_other_sagas_go_on(
        running: Callable[[World], None]) -> None:
    create = _command("saga-s", "CreateAlliance")
    cancel = _command("saga-s", "CancelAlliance")
    other = _command("saga-t", "CreateAlliance")
    failures = 0

    def fail(command_id: str) -> Exception | None:
        nonlocal failures
        if command_id == create.command_id and failures < 4:  # Pulsar down a while for it
            failures += 1
            return TIMEOUT
        return None

    world = World(FakeLink(fail))
    running(world)
    await world.hand_over("e1", create)  # round 1
    await world.link.failed.wait()  # round 1 is retrying
    await world.hand_over("e2", cancel)  # round 2, handed over after a step timeout
    await world.hand_over("e3", other)
    await world.wait_for(lambda: len(world.acked) == 3)

    assert failures == 4
    taken = world.link.taken
    assert taken.index(create.command_id) < taken.index(cancel.command_id)
    # The undo was not even tried before its step was in Pulsar ...
    first_cancel = next(n for n, b in enumerate(world.link.batches) if cancel.command_id in b)
    last_create = max(n for n, b in enumerate(world.link.batches) if create.command_id in b)
    assert first_cancel > last_create
    # ... while the other saga's command went at once, and its event was acknowledged.
    assert taken[0] == other.command_id
    assert world.acked.index("e3") < world.acked.index("e1")


async def test_a_held_back_command_goes_once_the_earlier_one_is_dead_lettered(
        running: Callable[[World], None]) -> None:
    create = _command("saga-s", "CreateAlliance")
    cancel = _command("saga-s", "CancelAlliance")
    world = World(FakeLink(lambda i: TERMINATED if i == create.command_id else None),
                  dead_letter_fails=lambda attempt: attempt <= 3)
    running(world)
    await world.hand_over("e1", create)
    await world.wait_for(lambda: world.dead_letter_tries >= 1)
    await world.hand_over("e2", cancel)
    await world.wait_for(lambda: len(world.acked) == 2)
    assert world.dead == [create.command_id]
    assert world.link.taken == [cancel.command_id]
    assert sorted(world.acked) == ["e1", "e2"]


async def test_a_round_is_one_batch_and_a_sagas_second_message_to_a_topic_waits_for_the_first(
        running: Callable[[World], None]) -> None:
    world = World(FakeLink())
    started = _command("saga-a", "SagaStarted", Destination.LIFECYCLE)
    a, b = _command("saga-a", "CreateAlliance"), _command("saga-b", "CreateAlliance")
    running(world)
    await world.hand_over("e1", started, a)  # a notice and a command of one saga: one batch
    await world.hand_over("e2", b)
    await world.wait_for(lambda: len(world.acked) == 2)
    assert world.link.batches == [[started.command_id, a.command_id, b.command_id]]

    # Two of one saga's messages to one topic in a round: the second goes once the first is
    # in, so that a retry of the first cannot follow it.
    failed = False

    def fail_once(command_id: str) -> Exception | None:
        nonlocal failed
        if command_id == create.command_id and not failed:
            failed = True
            return TIMEOUT
        return None

    create, cancel = _command("saga-c", "CreateAlliance"), _command("saga-c", "CancelAlliance")
    world = World(FakeLink(fail_once))
    running(world)
    await world.hand_over("e1", create)
    await world.hand_over("e2", cancel)
    await world.wait_for(lambda: len(world.acked) == 2)
    assert world.link.taken == [create.command_id, cancel.command_id]
