"""Snapshot operations, run with the workers' environment (APP_ID, KAFKA_BROKER_URL,
DATABASE_URL, SNAPSHOT_SCHEMA):

    python -m snapshots mirror    # the changelog -> PostgreSQL mirror on its own (a worker
                                  # starts one as its child unless SNAPSHOT_MIRROR=off);
                                  # --report prints its counters as JSON lines on stdout
    python -m snapshots rebuild   # (make snapshots-rebuild) every snapshot again, from the
                                  # sagas changelog (the source of truth); workers may run
    python -m snapshots restore   # (make tables-restore) the sagas and partner-sagas
                                  # changelogs from the snapshots, for a cluster that lost
                                  # them (the deadline index is rebuilt from the sagas); stop
                                  # the workers and delete their DATADIRs first

Retained sagas: rebuild stores a changelog tombstone as the mirror does (the row marked
retained, no personal data); restore writes a retained or pruned saga back as its tombstone
(domain.lifecycle.Tombstone), never as a live saga: its snapshot has no personal data left
to run on, and the tombstone is what the live tables held for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from domain.lifecycle import Tombstone
from runtime.errors import SnapshotError
from runtime.metrics import METRICS
from runtime.settings import ConfigError, Settings, load_settings
from runtime.topics import ensure_topics
from snapshots.mirror import ChangelogBatch, ChangelogMirror, sagas_changelog
from snapshots.store import store_from_settings
from wire.stored import INDEXED_SAGA, SAGA_STATE, TOMBSTONE, IndexedSaga


async def rebuild(cfg: Settings) -> int:
    """Upsert the latest state of every saga in the changelog; return how many sagas."""
    store = store_from_settings(cfg)
    await store.open()
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg.kafka_bootstrap, enable_auto_commit=False,
                                **cfg.kafka_client_options())
    await consumer.start()
    try:
        await store.migrate()
        topic = sagas_changelog(cfg)
        if topic not in await consumer.topics():
            raise SnapshotError(f"no changelog topic {topic} in Kafka: wrong APP_ID?")
        # The worker's preflight guarantees TOPIC_PARTITIONS partitions for every topic.
        tps = [TopicPartition(topic, p) for p in range(cfg.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        seen: set[str] = set()
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        # In changelog order, batch by batch, as the mirror does: every state's transitions
        # go to the history, the newest state of a batch to the snapshot, a tombstone marks
        # its saga retained.
        while await behind():
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            read = ChangelogBatch.of(r for records in batch.values() for r in records)
            if read:
                await read.write(store)
                seen.update(read.newest, read.tombstones)
        return len(seen)
    finally:
        await consumer.stop()
        await store.close()


async def restore(cfg: Settings) -> int:
    """Write every snapshot back into the table changelogs; return how many sagas."""
    store = store_from_settings(cfg)
    await store.open()
    await ensure_topics(cfg)
    producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka_bootstrap, acks="all", linger_ms=5,
                                **cfg.kafka_client_options())
    await producer.start()
    try:
        states = await store.all_states()
        partitions = sorted(await producer.partitions_for(sagas_changelog(cfg)))
        partition_of = DefaultPartitioner()
        for raw in states:
            saga_id, partner_id, value = _table_entry(raw, time.time())
            key = saga_id.encode()
            # The same partition the saga's events hash to: Faust writes a table entry to the
            # partition of the event being processed.
            p = partition_of(key, partitions, partitions)
            await producer.send(sagas_changelog(cfg), key=key, value=value, partition=p)
            if partner_id:
                # Kept for a retained saga too: a later PartnerCreated for the partner finds
                # its tombstone (a duplicate of it).
                await producer.send(f"{cfg.app_id}-partner-sagas-changelog",
                                    key=partner_id.encode(),
                                    value=INDEXED_SAGA.dump(IndexedSaga(saga_id=saga_id)))
        await producer.flush()
        return len(states)
    finally:
        await producer.stop()
        await store.close()


def _table_entry(snapshot: dict[str, Any], now: float) -> tuple[str, str | None, bytes]:
    """What the sagas table held for a snapshot (as SnapshotStore.get answers it): (saga id,
    partner id, value). A live saga's state; for a retained or pruned saga its tombstone, at
    the row's version (a pruned saga the live tables never retained: one above its last
    state's, as domain.lifecycle.bury does), so it answers as one and never runs again."""
    if not snapshot.get("tombstone"):
        state = SAGA_STATE.load_doc(snapshot)  # of any stored version
        return state.saga_id, state.partner_id, SAGA_STATE.dump(state)
    retained = snapshot.get("retained_at")
    tomb = Tombstone(
        saga_id=snapshot["saga_id"], version=int(snapshot["version"]) + (0 if retained else 1),
        status=snapshot["status"], flow=snapshot.get("flow") or "partner-creation",
        origin=snapshot["origin"], correlation_id=snapshot["correlation_id"],
        partner_id=snapshot.get("partner_id"), alliance_id=snapshot.get("alliance_id"),
        business_key=snapshot.get("business_key") or snapshot["correlation_id"],
        generation=int(snapshot.get("generation") or 1), created_at=float(snapshot["created_at"]),
        ended_at=float(snapshot.get("ended_at") or snapshot["updated_at"]),
        retained_at=float(retained or snapshot.get("pruned_at") or now), reason=snapshot.get("reason"),
        current=snapshot.get("current"), left_behind=tuple(snapshot.get("left_behind") or ()))
    return tomb.saga_id, tomb.partner_id, TOMBSTONE.dump(tomb)


#: How often `mirror --report` prints its counters.
REPORT_EVERY_S = 0.5


async def mirror(cfg: Settings, report: bool) -> None:
    """Run the mirror until stopped; a crash (Kafka unreachable a while) restarts it."""
    store = store_from_settings(cfg)
    await store.open()
    m = ChangelogMirror(cfg, store)

    async def reporter() -> None:
        while True:
            counters = {name: v for (name, labels), v in METRICS.counters.items() if not labels}
            line = {"counters": counters, "gauges": METRICS.gauges, "migrated": m.migrated}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(REPORT_EVERY_S)

    task = asyncio.create_task(reporter()) if report else None
    try:
        await m.run_forever()
    finally:
        if task is not None:
            task.cancel()
        await store.close()


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "mirror":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="[%(asctime)s] [%(process)d] [%(levelname)s] snapshot mirror: %(message)s")
        try:
            cfg = load_settings()
        except ConfigError as exc:
            print(f"snapshots: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        cfg.install_event_loop()
        try:
            asyncio.run(mirror(cfg, report="--report" in sys.argv[2:]))
        except KeyboardInterrupt:
            pass
        return
    if len(sys.argv) != 2 or sys.argv[1] not in ("rebuild", "restore"):
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    try:
        cfg = load_settings()
        t0 = time.monotonic()
        n = asyncio.run(rebuild(cfg) if sys.argv[1] == "rebuild" else restore(cfg))
    except (ConfigError, SnapshotError) as exc:
        print(f"snapshots: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    verb = "rebuilt" if sys.argv[1] == "rebuild" else "restored into the changelogs"
    print(f"snapshots: {n} sagas {verb} in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()
