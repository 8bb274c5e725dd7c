"""When the deadline timer fires a deadline again (agents/deadlines.Refires): only once its
first DeadlineReached can no longer be on its way to the saga agent. A fixed interval shorter
than a backlog fired every waiting deadline again and again, and the backlog never drained
(the first soak: 150,000 deadlines fired a minute after a Kafka restart)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from agents.deadlines import Refires

KEY = b"0000000123:saga-1"


def _sent(loop: asyncio.AbstractEventLoop, *, offset: int | None = None,
          error: bool = False) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = loop.create_future()
    if error:
        fut.set_exception(RuntimeError("broker down"))
    elif offset is not None:
        fut.set_result(SimpleNamespace(partition=3, offset=offset))
    return fut


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_deadline_waiting_in_a_backlog_is_not_fired_again(loop: asyncio.AbstractEventLoop) -> None:
    committed = {3: 100}
    refires = Refires(committed.get, after_s=30.0)
    refires.fired(KEY, now=0.0, sent=_sent(loop, offset=500))
    # Long past the interval, but the agent has not read as far as the event: it waits.
    assert KEY in refires.waiting(now=600.0)
    committed[3] = 500
    assert KEY in refires.waiting(now=600.0)  # 500 is the next to read: not yet read
    committed[3] = 501  # read and committed, and the entry is still due: fire again
    assert KEY not in refires.waiting(now=600.0)


def test_not_before_the_interval_even_when_read(loop: asyncio.AbstractEventLoop) -> None:
    refires = Refires({3: 1000}.get, after_s=30.0)
    refires.fired(KEY, now=0.0, sent=_sent(loop, offset=500))
    assert KEY in refires.waiting(now=29.0)
    assert KEY not in refires.waiting(now=30.0)


def test_a_queued_send_waits_and_a_failed_one_fires_again_at_once(loop: asyncio.AbstractEventLoop) -> None:
    refires = Refires({3: 1000}.get, after_s=30.0)
    refires.fired(KEY, now=0.0, sent=_sent(loop))  # not produced yet
    assert KEY in refires.waiting(now=3600.0)
    refires.fired(KEY, now=0.0, sent=_sent(loop, error=True))
    assert KEY not in refires.waiting(now=0.1)


def test_a_partition_no_longer_committed_here_is_not_fired_from_here(loop: asyncio.AbstractEventLoop) -> None:
    none: dict[int, int] = {}
    refires = Refires(none.get, after_s=30.0)
    refires.fired(KEY, now=0.0, sent=_sent(loop, offset=5))
    assert KEY in refires.waiting(now=3600.0)


def test_entries_that_left_the_index_are_forgotten(loop: asyncio.AbstractEventLoop) -> None:
    none: dict[int, int] = {}
    refires = Refires(none.get)
    refires.fired(KEY, now=0.0, sent=_sent(loop, offset=5))
    refires.fired(b"other", now=0.0, sent=_sent(loop, offset=6))
    refires.forget_except({b"other"})
    assert len(refires) == 1 and KEY not in refires.waiting(now=0.0)
