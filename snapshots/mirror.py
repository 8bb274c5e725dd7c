"""The mirror: the `sagas` changelog, read by a consumer group of its own, upserted into
PostgreSQL in batches. Every worker runs one (in a child process by default, see
SNAPSHOT_MIRROR); the group shares the changelog's partitions.

Order: a batch is upserted and committed in PostgreSQL, then its Kafka offsets are committed.
PostgreSQL down: the batch is retried with backoff while the changelog keeps everything, so
snapshots catch up when it returns; saga processing does not wait for any of this.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from orchestrator.config import Settings
from orchestrator.metrics import METRICS
from snapshots.errors import BadQuery, StoreUnavailable
from snapshots.store import SnapshotStore

__all__ = ["ChangelogMirror", "sagas_changelog"]

log = logging.getLogger(__name__)


def sagas_changelog(cfg: Settings) -> str:
    return f"{cfg.app_id}-sagas-changelog"


class ChangelogMirror:
    def __init__(self, cfg: Settings, store: SnapshotStore) -> None:
        self.cfg = cfg
        self.store = store
        self.consumer: AIOKafkaConsumer | None = None
        self.healthy_db = False
        self.migrated = False
        self.next_offset: dict[Any, int] = {}

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
        """`run`, restarted after a crash (Kafka unreachable a while) with a growing delay."""
        delay = 1.0
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if asyncio.get_running_loop().time() - started > 60:
                    delay = 1.0  # it had been healthy: a new failure
                log.exception("snapshot mirror failed; restarting in %.0fs", delay)
                METRICS.inc("snapshot_mirror_restarts_total")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run(self) -> None:
        await self._try_migrate()
        self.consumer = AIOKafkaConsumer(
            sagas_changelog(self.cfg), bootstrap_servers=self.cfg.kafka_bootstrap,
            group_id=f"{self.cfg.app_id}-snapshots", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=2000,
            session_timeout_ms=int(self.cfg.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.cfg.heartbeat_interval_s * 1000))
        await self.consumer.start()
        try:
            last_try = asyncio.get_running_loop().time()
            while True:
                if not self.migrated and asyncio.get_running_loop().time() - last_try > 2:
                    last_try = asyncio.get_running_loop().time()
                    await self._try_migrate(quiet=True)  # PostgreSQL was down at start
                batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
                # A saga's records are in one partition, in order: its last one is its newest.
                # Every record carries the transitions of the event that wrote it.
                newest: dict[str, bytes] = {}
                every: list[bytes] = []
                for tp, records in batch.items():
                    for r in records:
                        if r.value is not None and r.key is not None:
                            newest[r.key.decode()] = r.value
                            every.append(r.value)
                    if records:
                        self.next_offset[tp] = records[-1].offset + 1
                if newest:
                    await self._write(newest, every)
                    await self.consumer.commit()
                    METRICS.inc("snapshots_written_total", len(newest))
                METRICS.set("snapshot_lag_records", self.lag())
        finally:
            await self.consumer.stop()

    async def _write(self, states: dict[str, bytes], every: list[bytes]) -> None:
        delay = 0.5
        while True:
            try:
                if not self.migrated:
                    await self.store.migrate()
                    self.migrated = True
                try:
                    await self.store.upsert_json(states, every)
                except BadQuery:
                    await self._one_by_one(states)
                if not self.healthy_db:
                    log.info("snapshots: writing to PostgreSQL")
                self.healthy_db = True
                return
            except StoreUnavailable as exc:
                if self.healthy_db or delay == 0.5:
                    log.warning("snapshots: %s; retrying (the changelog keeps everything)", exc)
                self.healthy_db = False
                METRICS.inc("snapshot_write_failures_total")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)  # reconnecting is cheap; catching up fast matters

    async def _one_by_one(self, states: dict[str, bytes]) -> None:
        """A batch PostgreSQL refused (a value it cannot store): write its states one at a
        time and set aside, logged with the reason, the ones it refuses, so one bad state
        does not stop every snapshot behind it. The table keeps the state; only its snapshot
        is missing (see TROUBLESHOOTING.md), and the history of that batch holds only the
        newest state's transitions."""
        for saga_id, state in states.items():
            try:
                await self.store.upsert_json({saga_id: state})
            except BadQuery as exc:
                METRICS.inc("snapshots_rejected_total")
                log.error("snapshots: saga %s not snapshotted: %s", saga_id, exc)
