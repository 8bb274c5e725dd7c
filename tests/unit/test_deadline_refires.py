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
from tables.deadline_index import due_in_db

KEY = b"0000000123:saga-1"
ENTRY = b'{"saga_id":"saga-1","attempt":1}'


def _sent(loop: asyncio.AbstractEventLoop, *, offset: int | None = None,
          error: bool = False) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = loop.create_future()
    if error:
        fut.set_exception(RuntimeError("broker down"))
    elif offset is not None:
        fut.set_result(SimpleNamespace(partition=3, offset=offset))
    return fut


class _Index(dict[bytes, bytes]):
    """One partition's index as due_in_db reads it (rocksdict's items(from_key=...))."""

    def items(self, from_key: bytes = b"") -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return sorted((k, v) for k, v in super().items() if k >= from_key)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_deadline_waiting_in_a_backlog_is_not_fired_again(loop: asyncio.AbstractEventLoop) -> None:
    committed = {3: 100}
    refires = Refires(committed.get, after_s=30.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, offset=500))
    # Long past the interval, but the agent has not read as far as the event: it waits.
    assert KEY in refires.waiting(now=600.0)
    committed[3] = 500
    assert KEY in refires.waiting(now=600.0)  # 500 is the next to read: not yet read
    committed[3] = 501  # read and committed, and the entry is still due: fire again
    assert KEY not in refires.waiting(now=600.0)


def test_not_before_the_interval_even_when_read(loop: asyncio.AbstractEventLoop) -> None:
    refires = Refires({3: 1000}.get, after_s=30.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, offset=500))
    assert KEY in refires.waiting(now=29.0)
    assert KEY not in refires.waiting(now=30.0)


def test_a_queued_send_waits_and_a_failed_one_fires_again_at_once(loop: asyncio.AbstractEventLoop) -> None:
    refires = Refires({3: 1000}.get, after_s=30.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop))  # not produced yet
    assert KEY in refires.waiting(now=3600.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, error=True))
    assert KEY not in refires.waiting(now=0.1)


def test_a_partition_no_longer_committed_here_is_not_fired_from_here(loop: asyncio.AbstractEventLoop) -> None:
    none: dict[int, int] = {}
    refires = Refires(none.get, after_s=30.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, offset=5))
    assert KEY in refires.waiting(now=3600.0)


def test_entries_that_left_the_index_are_forgotten(loop: asyncio.AbstractEventLoop) -> None:
    none: dict[int, int] = {}
    refires = Refires(none.get)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, offset=5))
    refires.fired(b"other", ENTRY, now=0.0, sent=_sent(loop, offset=6))
    refires.forget_except({b"other"})
    assert len(refires) == 1 and KEY not in refires.waiting(now=0.0)


def test_a_later_deadline_under_the_same_key_is_not_held_back(loop: asyncio.AbstractEventLoop) -> None:
    """Keys are the due window (1 s) and the saga id: the saga's next deadline, due in the same
    second (a short backoff), has the same key and another value. Only the value fired waits."""
    db = _Index({KEY: ENTRY})
    refires = Refires({3: 0}.get, after_s=30.0)
    refires.fired(KEY, ENTRY, now=0.0, sent=_sent(loop, offset=5))
    assert [k for k, f in due_in_db(db, now=2e9, skip=refires.waiting(now=1.0))] == [KEY]
    assert [f for k, f in due_in_db(db, now=2e9, skip=refires.waiting(now=1.0))] == [None]  # held
    db[KEY] = b'{"saga_id":"saga-1","attempt":2,"due_at":0}'
    assert [f for k, f in due_in_db(db, now=2e9, skip=refires.waiting(now=1.0))] == [
        {"saga_id": "saga-1", "attempt": 2, "due_at": 0}]
