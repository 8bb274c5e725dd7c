"""The outbox bridge (bridges/outbox.py) with a fake consumer and sender: it follows the
partitions it is told, each from its committed offset; a batch's records are handed over in
partition order, a record no version wrote is dead-lettered with the reason, and offsets are
committed only once every command of the batch is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridges.outbox import OutboxBridge
from domain.messages import Command, Destination
from runtime.app import cfg
from streams.partner_saga import outbox
from wire.internal import OutboxEntry
from wire.stored import OUTBOX, UnknownSchema


def _command(saga: str, n: int) -> Command:
    return Command(command_id=f"{saga}-{n}", saga_id=saga, correlation_id=saga,
                   destination=Destination.ALIANZAS, type="CreateAlliance", data={})


def _record(offset: int, value: bytes, key: bytes = b"s") -> SimpleNamespace:
    return SimpleNamespace(offset=offset, key=key, value=value)


class Sender:
    """The outbound sender: takes commands, acknowledges them when told to."""

    def __init__(self) -> None:
        self.handed: list[str] = []
        self.acks: list[Callable[[], Awaitable[object]]] = []

    @staticmethod
    def encode(commands: Sequence[Command]) -> list[Any]:
        return [c.command_id for c in commands]

    async def send(self, commands: Sequence[Command], items: list[Any],
                   ack: Callable[[], Awaitable[object]]) -> None:
        self.handed.extend(items)
        self.acks.append(ack)


class Consumer:
    def __init__(self, batches: list[dict[Any, list[Any]]]) -> None:
        self.batches = batches
        self.commits: list[dict[Any, int]] = []
        self.assigned: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int | str] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps

    async def committed(self, tp: TopicPartition) -> int | None:
        return 3 if tp.partition == 0 else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = "beginning"

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        if not self.batches:
            raise asyncio.CancelledError  # the test is over
        return self.batches.pop(0)

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets)


def test_an_outbox_record_of_any_version_is_read() -> None:
    one, two = _command("s", 1), _command("s", 2)
    entry = OUTBOX.dump(OutboxEntry(commands=(one, two)))
    assert entry.endswith(b',"sv":2}')
    assert OUTBOX.load(entry).commands == (one, two)
    # Version 1: the same object without its version, and before dcd47dd one command per record.
    assert OUTBOX.load(OutboxEntry(commands=(one, two)).model_dump_json().encode()).commands == (one, two)
    assert OUTBOX.load(one.model_dump_json().encode()).commands == (one,)
    with pytest.raises(ValueError):
        OUTBOX.load(b'{"commands": "no"}')
    with pytest.raises(UnknownSchema, match="schema version 3"):
        OUTBOX.load(entry.replace(b'"sv":2', b'"sv":3'))


async def test_a_batch_is_committed_only_once_every_command_is_sent() -> None:
    p0, p1 = TopicPartition(outbox.get_topic_name(), 0), TopicPartition(outbox.get_topic_name(), 1)
    entry = OutboxEntry(commands=(_command("a", 1), _command("a", 2))).model_dump_json().encode()
    later = OutboxEntry(commands=(_command("a", 3),)).model_dump_json().encode()
    other = OutboxEntry(commands=(_command("b", 1),)).model_dump_json().encode()
    consumer = Consumer([{p0: [_record(4, entry), _record(5, b"not an outbox record"), _record(6, later)],
                          p1: [_record(9, other, b"b")]}])
    sender, dead = Sender(), []

    async def dead_letter(value: bytes, reason: str, **kwargs: Any) -> Awaitable[None]:
        dead.append((value, reason, kwargs["origin"]))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    bridge = OutboxBridge(cfg, sender, dead_letter=dead_letter, consumer=lambda: consumer)  # type: ignore[arg-type]
    bridge.follow([1, 0])  # the partitions of the sagas its worker owns
    run = asyncio.create_task(bridge.run())
    for _ in range(100):
        if len(sender.acks) == 3:
            break
        await asyncio.sleep(0.01)
    # Handed over in partition order; the bad record dead-lettered with why, not sent.
    assert sender.handed == ["a-1", "a-2", "a-3", "b-1"]
    (value, reason, origin), = dead
    assert value == b"not an outbox record" and "invalid outbox record" in reason
    assert origin == f"{outbox.get_topic_name()}[0]"
    for ack in sender.acks[:2]:
        await ack()
    await asyncio.sleep(0.05)
    assert consumer.commits == []  # b-1 not sent yet
    await sender.acks[2]()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert consumer.commits == [{p0: 7, p1: 10}]
    # It followed the partitions it was told, each from its committed offset.
    assert consumer.assigned == [p0, p1] and consumer.positions == {p0: 3, p1: "beginning"}
