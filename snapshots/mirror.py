"""The mirror: the `sagas` changelog, read by a consumer group of its own, upserted into
PostgreSQL in batches. Every worker runs one (in a child process by default, see
SNAPSHOT_MIRROR); the group shares the changelog's partitions.

Order: a batch is upserted and committed in PostgreSQL, then its Kafka offsets are committed.
PostgreSQL down: the batch is retried (common.retry, policy "snapshot-write") while the
changelog keeps everything, so snapshots catch up when it returns; saga processing does not
wait for any of this.

What a batch holds: saga states, tombstones (a saga retention took out of the live tables,
domain.lifecycle.Tombstone: its row is marked retained and loses its personal data), and
deletions (a key removed by an earlier version's retention: nothing to write). The mirror
tells them apart by their first bytes and parses none of them.

Retention of the snapshots themselves (`SnapshotStore.prune`) is started from the mirror's
loop, runs beside it once the mirror has caught up, at most every `prune_every_s`: finished
sagas older than `snapshot_retention_s` lose their history and personal data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError

from common.retry import policy
from domain.lifecycle import Tombstone
from runtime.errors import BadQuery, StoreUnavailable
from runtime.metrics import METRICS
from runtime.settings import Settings
from snapshots.store import SnapshotStore
from wire.stored import SAGA_STATE, TOMBSTONE, Form, schema_of

__all__ = ["ChangelogBatch", "ChangelogMirror", "sagas_changelog"]

log = logging.getLogger(__name__)

#: A run of the mirror this long was healthy: its next failure waits from the start again.
HEALTHY_AFTER_S = 60.0


def sagas_changelog(cfg: Settings) -> str:
    return f"{cfg.app_id}-sagas-changelog"


@dataclass
class ChangelogBatch:
    """One read of the changelog, sorted: the newest state and the newest tombstone of each
    saga, every state in changelog order (their transitions are the history), and every
    state with its saga id (for writing a refused batch one saga at a time)."""

    newest: dict[str, bytes] = field(default_factory=dict)
    tombstones: dict[str, bytes] = field(default_factory=dict)
    keyed: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def every(self) -> list[bytes]:
        return [value for _, value in self.keyed]

    def __bool__(self) -> bool:
        return bool(self.newest or self.tombstones)

    @classmethod
    def of(cls, records: Iterable[Any]) -> ChangelogBatch:
        """`records`: a saga's records in changelog order (the changelog keeps one saga in
        one partition, in order): its last state is its newest."""
        b = cls()
        for r in records:
            if r.key is None or r.value is None:
                continue  # a deletion: an earlier version's retention; nothing to write
            key = r.key.decode()
            if Tombstone.is_one(r.value):
                b.tombstones[key] = _current(TOMBSTONE, r.value)
            else:
                value = _current(SAGA_STATE, r.value)
                b.newest[key] = value
                b.keyed.append((key, value))
        return b

    async def write(self, store: SnapshotStore) -> None:
        await store.upsert_json(self.newest, self.every, self.tombstones)


def _current(form: Form[Any], raw: bytes) -> bytes:
    """A record of an older schema version in the current one (the snapshot row holds that);
    one that does not read is left as it is, for PostgreSQL to refuse with its reason."""
    if schema_of(raw) >= form.version:
        return raw
    try:
        return form.upgrade(raw)
    except ValueError:
        return raw


class ChangelogMirror:
    """`snapshot_retention_s`, `prune_every_s`, `prune_batch`: the snapshots' own retention
    (SnapshotStore.prune), run at most every `prune_every_s` (0: never); by default the
    settings' SNAPSHOT_RETENTION_S, SNAPSHOT_PRUNE_EVERY_S and SNAPSHOT_PRUNE_BATCH."""

    def __init__(self, cfg: Settings, store: SnapshotStore, *,
                 snapshot_retention_s: float | None = None,
                 prune_every_s: float | None = None,
                 prune_batch: int | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.snapshot_retention_s = cfg.snapshot_retention_s if snapshot_retention_s is None \
            else snapshot_retention_s
        self.prune_every_s = cfg.snapshot_prune_every_s if prune_every_s is None else prune_every_s
        self.prune_batch = cfg.snapshot_prune_batch if prune_batch is None else prune_batch
        self.consumer: AIOKafkaConsumer | None = None
        self.healthy_db = False
        self.migrated = False
        self.next_offset: dict[Any, int] = {}
        self._last_prune: float | None = None
        self._pruning: asyncio.Task[int] | None = None

    def lag(self) -> int:
        """Changelog records not yet mirrored, over the partitions this member read from."""
        c = self.consumer
        if c is None:
            return 0
        total = 0
        for tp in c.assignment():
            hw, done = c.highwater(tp), self.next_offset.get(tp)
            if hw is not None and done is not None:
                total += max(0, hw - done)
        return total

    async def _try_migrate(self, *, quiet: bool = False) -> None:
        """Create or upgrade the schema if not done yet; PostgreSQL down leaves it for later."""
        if self.migrated:
            return
        try:
            await self.store.migrate()
            self.migrated = True
        except StoreUnavailable as exc:
            if not quiet:
                log.warning("snapshots: %s; the schema is created when it answers", exc)

    async def run_forever(self) -> None:
        """`run`, restarted after a crash (Kafka unreachable a while) with the waits of the
        "mirror-restart" policy; a run that lasted HEALTHY_AFTER_S starts them over."""
        waits = policy("mirror-restart").waits()
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if asyncio.get_running_loop().time() - started > HEALTHY_AFTER_S:
                    waits.reset()  # it had been healthy: a new failure
                if waits.exhausted:
                    log.exception("snapshot mirror failed; the mirror-restart retry budget is spent")
                    raise
                delay = waits.next_delay()
                log.exception("snapshot mirror failed; restarting in %.1fs", delay)
                METRICS.inc("snapshot_mirror_restarts_total")
                await asyncio.sleep(delay)

    async def run(self) -> None:
        await self._try_migrate()
        self.consumer = AIOKafkaConsumer(
            sagas_changelog(self.cfg), bootstrap_servers=self.cfg.kafka_bootstrap,
            group_id=f"{self.cfg.app_id}-snapshots", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=2000,
            session_timeout_ms=int(self.cfg.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.cfg.heartbeat_interval_s * 1000),
            **self.cfg.kafka_client_options())
        await self.consumer.start()
        try:
            last_try = asyncio.get_running_loop().time()
            while True:
                if not self.migrated and asyncio.get_running_loop().time() - last_try > 2:
                    last_try = asyncio.get_running_loop().time()
                    await self._try_migrate(quiet=True)  # PostgreSQL was down at start
                await self._maybe_prune()
                batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
                # A saga's records are in one partition, in order: its last one is its newest.
                # Every state carries the transitions of the event that wrote it.
                read = ChangelogBatch.of(r for records in batch.values() for r in records)
                for tp, records in batch.items():
                    if records:
                        self.next_offset[tp] = records[-1].offset + 1
                if read:
                    await self._write(read)
                    METRICS.inc("snapshots_written_total", len(read.newest))
                    if read.tombstones:
                        METRICS.inc("snapshot_tombstones_written_total", len(read.tombstones))
                if any(batch.values()):
                    await self.consumer.commit()
                METRICS.set("snapshot_lag_records", self.lag())
        finally:
            if self._pruning is not None:
                self._pruning.cancel()
                await asyncio.gather(self._pruning, return_exceptions=True)
                self._pruning = None
            await self.consumer.stop()

    async def _maybe_prune(self) -> None:
        """Start a round of the snapshots' retention beside the loop, never in its way: only
        once the mirror has caught up with its partitions (not while it catches up after a
        restart or an outage), at most every `prune_every_s` (the first as soon as it caught
        up), and on the store's pool, not on the writer's connection."""
        if self.prune_every_s <= 0 or not self.migrated:
            return
        if self._pruning is not None and not self._pruning.done():
            return
        now = asyncio.get_running_loop().time()
        if self._last_prune is not None and now - self._last_prune < self.prune_every_s:
            return
        if not await self._caught_up():
            return
        self._last_prune = now
        self._pruning = asyncio.create_task(self.prune())

    async def _caught_up(self) -> bool:
        """Has this member read its partitions up to their ends (as last fetched)?"""
        c = self.consumer
        tps = c.assignment() if c is not None else set()
        if c is None or not tps:
            return False
        try:
            for tp in tps:
                hw = c.highwater(tp)
                if hw is None or await c.position(tp) < hw:
                    return False
        except IllegalStateError:  # revoked meanwhile (a rebalance): not now
            return False
        return True

    async def prune(self) -> int:
        """One round of `SnapshotStore.prune`; PostgreSQL unreachable leaves it to the next."""
        try:
            n = await self.store.prune(self.snapshot_retention_s, batch=self.prune_batch)
        except StoreUnavailable as exc:
            log.warning("snapshots: retention postponed: %s", exc)
            return 0
        except Exception:
            log.exception("snapshots: retention failed; tried again in %.0fs", self.prune_every_s)
            return 0
        if n:
            METRICS.inc("snapshot_rows_pruned_total", n)
            log.info("snapshots: %d finished sagas past %.0fs lost their history and personal data",
                     n, self.snapshot_retention_s)
        return n

    async def _write(self, batch: ChangelogBatch) -> None:
        """Write `batch` until PostgreSQL takes it (policy "snapshot-write"): the changelog
        keeps everything meanwhile. Logged once per outage, counted every failure."""
        waits = policy("snapshot-write").waits()
        while True:
            try:
                if not self.migrated:
                    await self.store.migrate()
                    self.migrated = True
                try:
                    await batch.write(self.store)
                except BadQuery:
                    await self._one_by_one(batch)
                if not self.healthy_db:
                    log.info("snapshots: writing to PostgreSQL")
                self.healthy_db = True
                return
            except StoreUnavailable as exc:
                if self.healthy_db or waits.attempt == 0:
                    log.warning("snapshots: %s; retrying (the changelog keeps everything)", exc)
                self.healthy_db = False
                METRICS.inc("snapshot_write_failures_total")
                if waits.exhausted:
                    raise  # a budget set for it (RETRY_SNAPSHOT_WRITE): the mirror restarts
                await waits.sleep()

    async def _one_by_one(self, batch: ChangelogBatch) -> None:
        """A batch PostgreSQL refused (a value it cannot store): write it one saga at a time,
        with all of that saga's states (its whole history), and when PostgreSQL refuses a
        saga, its states one at a time, in changelog order; set aside, logged with the
        reason, the ones it refuses, so one bad state does not stop every snapshot behind it.
        The table keeps the state; only its snapshot (or that change's history) is missing
        (see TROUBLESHOOTING.md). Tombstones likewise, one at a time."""
        by_saga: dict[str, list[bytes]] = {}
        for saga_id, state in batch.keyed:
            by_saga.setdefault(saga_id, []).append(state)
        for saga_id, states in by_saga.items():
            try:
                await self.store.upsert_json({saga_id: batch.newest[saga_id]}, states)
            except BadQuery:
                await self._each(saga_id, states)
        for saga_id, tomb in batch.tombstones.items():
            try:
                await self.store.upsert_json({}, None, {saga_id: tomb})
            except BadQuery as exc:
                METRICS.inc("snapshots_rejected_total")
                log.error("snapshots: tombstone of saga %s not stored: %s", saga_id, exc)

    async def _each(self, saga_id: str, states: Sequence[bytes]) -> None:
        for state in states:
            try:
                await self.store.upsert_json({saga_id: state})
            except BadQuery as exc:
                METRICS.inc("snapshots_rejected_total")
                log.error("snapshots: a state of saga %s not snapshotted: %s", saga_id, exc)
