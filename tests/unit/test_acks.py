"""Events are acknowledged in offset order per partition, whatever order they finish in."""

from __future__ import annotations

from agents.acks import InOrderAcks


def _acks() -> tuple[InOrderAcks, list[tuple[str, int]]]:
    acked: list[tuple[str, int]] = []

    async def ack(event: tuple[str, int]) -> None:
        acked.append(event)

    return InOrderAcks(ack, partition_of=lambda e: e[0]), acked


async def test_an_event_done_early_waits_for_the_ones_before_it() -> None:
    acks, acked = _acks()
    done = [acks.track(("p0", n)) for n in range(4)]
    await done[2]()
    await done[1]()
    assert acked == []  # offset 0 is not done: nothing may be acknowledged
    await done[0]()
    assert acked == [("p0", 0), ("p0", 1), ("p0", 2)]
    await done[3]()
    assert acked == [("p0", 0), ("p0", 1), ("p0", 2), ("p0", 3)]
    assert acks.waiting == 0


async def test_partitions_do_not_wait_for_each_other() -> None:
    acks, acked = _acks()
    a0, b0, a1 = acks.track(("a", 0)), acks.track(("b", 0)), acks.track(("a", 1))
    await b0()
    await a1()
    assert acked == [("b", 0)]
    assert acks.waiting == 2
    await a0()
    assert acked == [("b", 0), ("a", 0), ("a", 1)]


async def test_events_tracked_after_a_drain_are_acknowledged_in_turn() -> None:
    acks, acked = _acks()
    await acks.track(("p", 0))()
    later = acks.track(("p", 1))
    assert acked == [("p", 0)]
    await later()
    assert acked == [("p", 0), ("p", 1)]
