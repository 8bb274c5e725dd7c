"""What the Kafka topics of a run hold about a few sagas: written when a scenario is not clean,
before its topics are deleted, so that a lost or wrong end can be read afterwards.

Every record of every `<app_id>-*` topic (events, changelogs, outbox, routing, dead letters)
whose key or value holds one of the saga ids, in topic, partition and offset order, one line
each, with the committed offsets of the run's consumer groups for the partitions involved.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["trace_sagas"]


async def trace_sagas(app_id: str, saga_ids: list[str], bootstrap: str, out: Path) -> Path:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    wanted = [s.encode() for s in saga_ids]
    lines: list[str] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(f"{app_id}-"))
        described = {d["topic"]: d for d in await admin.describe_topics(topics)} if topics else {}
        hit_partitions: set[TopicPartition] = set()
        for topic in topics:
            parts = [TopicPartition(topic, p["partition"])
                     for p in sorted(described[topic]["partitions"], key=lambda p: p["partition"])]
            if not parts:
                continue
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            todo = {tp for tp in parts if ends[tp] > 0}
            deadline = time.monotonic() + 60
            while todo and time.monotonic() < deadline:
                got = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in got.items():
                    for r in records:
                        blob = (r.key or b"") + b"|" + (r.value or b"")
                        for sid, w in zip(saga_ids, wanted, strict=True):
                            if w in blob:
                                hit_partitions.add(tp)
                                hdrs = ",".join(f"{k}={v[:40]!r}" for k, v in (r.headers or ()))
                                value = (r.value or b"")[:600]
                                lines.append(f"{sid} {tp.topic}[{tp.partition}]@{r.offset} ts={r.timestamp} "
                                             f"key={r.key!r} headers=[{hdrs}] value={value!r}")
                    if records and records[-1].offset + 1 >= ends[tp]:
                        todo.discard(tp)
        lines.sort(key=lambda line: line.split(" ", 1))
        for group, _ in await admin.list_consumer_groups():
            offsets = await admin.list_consumer_group_offsets(group)
            for tp, meta in sorted(offsets.items()):
                if tp in hit_partitions:
                    lines.append(f"group {group} committed {tp.topic}[{tp.partition}] = {meta.offset}")
    finally:
        await consumer.stop()
        await admin.close()
    out.write_text("\n".join(lines) + "\n")  # noqa: ASYNC240 (a diagnosis, once, after the run)
    return out
