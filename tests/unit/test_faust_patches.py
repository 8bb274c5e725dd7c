"""The worker's Kafka consumer long-polls for KAFKA_FETCH_MAX_WAIT_MS, not Faust's fixed 1.5 s
(a busy partition's next records wait behind a fetch of the quiet ones for up to that long;
runtime/faust_patches.py)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from runtime.app import create_app
from runtime.settings import load_settings


@pytest.mark.parametrize("wait_ms", [50, 250])
async def test_the_worker_consumer_long_polls_for_the_configured_time(
        monkeypatch: pytest.MonkeyPatch, tmp_path, wait_ms: int) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", str(wait_ms))
    monkeypatch.setenv("APP_ID", "transport-unit-test")
    monkeypatch.setenv("DATADIR", str(tmp_path))
    app = create_app(load_settings())
    thread = app.consumer._thread  # the consumer is built, never started: no broker is needed
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the consumer thread's own loop, never run here


def test_the_setting_rejects_a_wait_that_is_not_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.settings import ConfigError
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ConfigError, match="KAFKA_FETCH_MAX_WAIT_MS"):
        load_settings()


# The consumer's commit and acknowledgement rules (runtime/faust_patches.py): an
# event the agent never processed is never committed past.

def _consumer(committed: int | None, acked: list[int]):  # type: ignore[no-untyped-def]
    from collections import defaultdict

    from intervaltree import IntervalTree

    from runtime.faust_patches import _Consumer
    tp = TP("saga-events", 0)
    consumer = object.__new__(_Consumer)  # its commit bookkeeping only: no broker, no thread
    consumer._acked = defaultdict(list, {tp: list(acked)})
    consumer._acked_index = defaultdict(set, {tp: set(acked)})
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})
    consumer._gap = defaultdict(IntervalTree)
    return consumer, tp


async def test_a_commit_does_not_pass_an_offset_nobody_acknowledged_and_it_is_read_again() -> None:
    import asyncio
    consumer, tp = _consumer(committed=4, acked=[5, 6, 7])  # 4 never reached the agent
    sought: list[tuple[object, int]] = []

    async def seek(partition: object, offset: int) -> None:
        sought.append((partition, offset))

    consumer.assignment = lambda: {tp}
    consumer.seek = seek
    assert consumer._new_offset(tp) is None
    assert consumer._new_offset(tp) is None  # one re-read at a time
    await asyncio.sleep(0.01)
    assert sought == [(tp, 4)]


async def test_a_partitions_first_commit_does_not_pass_its_first_record_either() -> None:
    consumer, tp = _consumer(committed=0, acked=[1, 2])  # reading started at 0 (perform_seek)
    consumer.assignment = lambda: set()  # the re-read is not the point here
    assert consumer._new_offset(tp) is None


def test_a_commit_moves_over_acknowledged_offsets_from_the_committed_one() -> None:
    consumer, tp = _consumer(committed=4, acked=[4, 5, 6, 8])
    assert consumer._new_offset(tp) == 7


def test_the_first_commit_of_a_partition_is_its_first_run_of_acknowledged_offsets() -> None:
    consumer, tp = _consumer(committed=None, acked=[0, 1, 2, 5])
    assert consumer._new_offset(tp) == 3


class _Message:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.acks = 0

    def ack(self, consumer: object) -> bool:
        self.acks += 1
        return True


def _event(topic: str):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from runtime.faust_patches import ManualAckEvent
    event = object.__new__(ManualAckEvent)
    event.message = _Message(topic)  # type: ignore[assignment]
    event.app = SimpleNamespace(consumer=object())  # type: ignore[assignment]
    return event


def test_a_stream_cannot_acknowledge_a_manual_topics_event_it_skipped() -> None:
    from runtime.faust_patches import manual_ack
    manual_ack("manual-events")
    skipped, other = _event("manual-events"), _event("other-events")
    assert skipped.ack() is False and skipped.message.acks == 0
    assert other.ack() is True and other.message.acks == 1  # Faust's own rule elsewhere


async def test_the_agent_acknowledges_a_manual_topics_event_when_done() -> None:
    from runtime.faust_patches import acknowledge, manual_ack
    manual_ack("manual-events")
    event = _event("manual-events")

    class _Stream:
        async def ack(self, ev: object) -> bool:
            return bool(event.ack())

    await acknowledge(_Stream(), event)  # type: ignore[arg-type]
    assert event.message.acks == 1


# The consumer's fetch loop (runtime/faust_patches.py, _Consumer.getmany): a record it
# does not hand on leaves its partition's position at that record. Faust's internals around it
# (the fetch, the app) are stood in for; the decision and the seek are what is tested.

def _fetching(records: dict[Any, list[int]], active: set[Any], *, new_generation_after: int | None = None):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from faust.transport.utils import DefaultSchedulingStrategy

    from runtime.faust_patches import _Consumer

    class _Fetching(_Consumer):
        should_stop = False  # a Service property; no service runs here

    consumer = object.__new__(_Fetching)
    monitor = SimpleNamespace(track_tp_end_offset=lambda *a: None)
    app = SimpleNamespace(consumer_generation_id=1, monitor=monitor)
    consumer.app = app  # type: ignore[misc]
    consumer.flow_active = True
    consumer._buffered_partitions = set()
    consumer.scheduler = DefaultSchedulingStrategy()
    consumer.sought = []

    async def wait_next_records(timeout: float):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        return {tp: [SimpleNamespace(offset=o) for o in offsets] for tp, offsets in records.items()}, active

    async def seek(tp: Any, offset: int) -> None:
        consumer.sought.append((tp, offset))

    handed: list[Any] = []

    def to_message(tp: Any, record: Any) -> Any:
        handed.append((tp, record.offset))
        if new_generation_after is not None and len(handed) == new_generation_after:
            app.consumer_generation_id = 2  # a rebalance completes while the batch is handed on
        return record

    consumer._wait_next_records = wait_next_records
    consumer.seek = seek
    consumer.assignment = lambda: set(records)
    consumer.highwater = lambda tp: 0
    consumer._to_message = to_message
    return consumer, handed


async def test_a_paused_partitions_fetched_records_are_read_again_not_dropped() -> None:
    a, b = TP("events", 0), TP("events", 1)
    consumer, handed = _fetching({a: [0, 1], b: [5, 6]}, active={a})  # b paused since its fetch
    async for _ in consumer.getmany(1.0):
        pass
    assert handed == [(a, 0), (a, 1)]
    assert consumer.sought == [(b, 5)]


async def test_the_rest_of_a_batch_after_a_generation_change_is_left_to_the_rebalances_seek() -> None:
    # The rebalance ends with every partition sought to its committed offset (perform_seek),
    # at or before these records; a seek back of its own raced that seek, and left partitions
    # past records never processed (kill -9 in make chaos lost sagas that way).
    a = TP("events", 0)
    consumer, handed = _fetching({a: [3, 4, 5]}, active={a}, new_generation_after=1)
    async for _ in consumer.getmany(1.0):
        pass
    assert handed == [(a, 3)]
    assert consumer.sought == []


def _gapping(earliest: int):  # type: ignore[no-untyped-def]
    from runtime.faust_patches import manual_ack
    manual_ack("gap-events")
    consumer, _ = _consumer(committed=None, acked=[])
    tp = TP("gap-events", 0)
    consumer._committed_offset[tp] = 10

    async def earliest_offsets(*tps: Any) -> dict[Any, int]:
        return {t: earliest for t in tps}

    consumer.earliest_offsets = earliest_offsets
    return consumer, tp


async def test_a_jump_in_a_manual_topics_offsets_is_no_gap_so_no_commit_passes_it() -> None:
    consumer, tp = _gapping(earliest=0)
    await consumer._add_gap(tp, 11, 20)  # Faust read 20 right after 10: 11..19 were skipped
    assert not consumer._gap[tp]
    consumer._acked[tp] = [20, 21]
    consumer.assignment = lambda: set()  # the re-read is not the point here
    assert consumer._new_offset(tp) is None  # not 22: 11..19 are read again first


async def test_records_retention_deleted_are_a_gap_on_a_manual_topic_too() -> None:
    consumer, tp = _gapping(earliest=15)  # 11..14 deleted, 15..19 skipped
    await consumer._add_gap(tp, 11, 20)
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[tp]) == [(11, 15)]


async def test_other_topics_keep_fausts_gaps() -> None:
    consumer, _ = _gapping(earliest=0)
    tp = TP("compacted-or-transactional", 0)
    consumer._committed_offset[tp] = 10
    await consumer._add_gap(tp, 11, 20)
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[tp]) == [(11, 21)]


async def test_a_batch_handed_on_whole_moves_nothing_back() -> None:
    a, b = TP("events", 0), TP("events", 1)
    consumer, handed = _fetching({a: [0, 1], b: [7]}, active={a, b})
    async for _ in consumer.getmany(1.0):
        pass
    assert sorted(handed) == [(a, 0), (a, 1), (b, 7)]
    assert consumer.sought == []


# The Faust methods runtime/faust_patches.py overrides, and a digest of their source as read in
# faust-streaming 0.15.3. A new Faust that changes one fails here, naming it: read the new
# method and the patch again, then update its digest.
READ_IN = "0.15.3"
PATCHED = {
    "faust.App.maybe_start_producer": "776ccefb9db5a370",
    "faust.App._new_transport": "42db531312dd776f",
    "faust.App._new_producer": "e7e1814e715d8b30",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": "c2701bfc3e6f6cad",
    "faust.Event.ack": "2d29a6eda87c4ce5",
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": "0870ec53dea75083",
    "faust.transport.drivers.aiokafka.Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.drivers.aiokafka.Consumer._new_offset": "1d2c7ea89a7ad4f1",
    "faust.transport.drivers.aiokafka.Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.drivers.aiokafka.Consumer._add_gap": "4df2573ded7c1c2c",
}


def _resolve(dotted: str) -> Any:
    module_name, _, rest = dotted.partition(".")
    obj: Any = importlib.import_module(module_name)
    parts = rest.split(".")
    while parts:
        name = parts.pop(0)
        if hasattr(obj, name):
            obj = getattr(obj, name)
        else:  # a submodule
            obj = importlib.import_module(f"{obj.__name__}.{name}")
    return obj


def test_the_patched_faust_methods_are_the_ones_read() -> None:
    import faust
    from faust.transport.producer import ProducerBuffer

    changed = {name: digest for name, digest in PATCHED.items()
               if hashlib.sha256(inspect.getsource(inspect.unwrap(_resolve(name))).encode()).hexdigest()[:16]
               != digest}
    assert not changed, (f"faust-streaming {faust.__version__} changed what runtime/faust_patches.py "
                         f"overrides (read in {READ_IN}): {sorted(changed)}")
    assert isinstance(ProducerBuffer.max_messages, int)  # the class attribute SagaApp raises


# The tail case (runtime/faust_patches.py, _Consumer.reread_stalled): records skipped with no
# later record acknowledged leave no hole for `_new_offset` to see; a partition whose
# committed and read offsets stay put while records wait past them is read again.

def _stalling(committed: int, end: int):  # type: ignore[no-untyped-def]
    from runtime.faust_patches import manual_ack
    manual_ack("stall-events")
    consumer, _ = _consumer(committed=None, acked=[])
    tp = TP("stall-events", 0)
    consumer._committed_offset[tp] = committed
    consumer._read_offset = {tp: committed}
    consumer.flow_active = True
    consumer.assignment = lambda: {tp}
    consumer.highwater = lambda _tp: end
    consumer.sought = []

    async def seek(partition: object, offset: int) -> None:
        consumer.sought.append((partition, offset))

    consumer.seek = seek
    return consumer, tp


async def test_a_partition_stalled_short_of_its_records_is_read_again() -> None:
    import asyncio

    from runtime.faust_patches import REREAD_AFTER_S
    consumer, tp = _stalling(committed=7, end=10)  # 7..9 skipped, nothing after them
    consumer.reread_stalled(now=100.0)
    consumer.reread_stalled(now=100.0 + REREAD_AFTER_S / 2)
    await asyncio.sleep(0.01)
    assert consumer.sought == []  # maybe on their way still
    consumer.reread_stalled(now=100.0 + REREAD_AFTER_S)
    await asyncio.sleep(0.01)
    assert consumer.sought == [(tp, 7)]


async def test_a_partition_that_moves_or_is_read_to_its_end_is_left_alone() -> None:
    import asyncio

    from runtime.faust_patches import REREAD_AFTER_S
    consumer, tp = _stalling(committed=7, end=10)
    consumer.reread_stalled(now=100.0)
    consumer._read_offset[tp] = 8  # a record reached the agent meanwhile
    consumer.reread_stalled(now=100.0 + REREAD_AFTER_S)
    done, _ = _stalling(committed=10, end=10)  # everything committed
    done.reread_stalled(now=100.0)
    done.reread_stalled(now=100.0 + REREAD_AFTER_S)
    await asyncio.sleep(0.01)
    assert consumer.sought == [] and done.sought == []


def _seeking(committed: dict[Any, int], assigned: set[Any],  # type: ignore[no-untyped-def]
             revoke_on_seek: bool = False):
    from aiokafka.errors import IllegalStateError

    consumer, _ = _consumer(committed=None, acked=[])
    consumer._read_offset = {}
    consumer.sought_to_beginning = []

    async def seek_to_committed() -> dict[Any, int]:
        return dict(committed)

    async def seek_to_beginning(*tps: Any) -> None:
        if revoke_on_seek:  # a rebalance took them while the consumer's thread was busy
            raise IllegalStateError(f"Partitions {set(tps)} are not assigned")
        consumer.sought_to_beginning.extend(tps)

    async def earliest_offsets(*tps: Any) -> dict[Any, int]:
        return {t: 0 for t in tps}

    consumer.seek_to_committed = seek_to_committed
    consumer._thread = SimpleNamespace(seek_to_beginning=seek_to_beginning)
    consumer.earliest_offsets = earliest_offsets
    consumer.assignment = lambda: set(assigned)
    consumer._is_changelog_tp = lambda tp: False
    return consumer


async def test_a_partition_revoked_before_its_seek_is_not_sought() -> None:
    # The docker test's three workers starting at once: perform_seek ran while a new
    # rebalance took partitions; seeking them raised IllegalStateError in the fetcher, which
    # crashed the worker again and again.
    kept, gone = TP("events", 0), TP("events", 1)
    consumer = _seeking({kept: 0, gone: 0}, assigned={kept})
    await consumer.perform_seek()
    assert consumer.sought_to_beginning == [kept]
    revoked = _seeking({kept: 0}, assigned={kept}, revoke_on_seek=True)
    await revoked.perform_seek()  # taken between the assignment read and the seek: no raise
    assert revoked._read_offset == {kept: 0} and revoked.sought_to_beginning == []
