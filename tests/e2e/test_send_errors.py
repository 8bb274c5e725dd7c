"""Pulsar refusing a command for good (#10, defect 3): before, the bridge retried it forever,
which held its event, and with it every later acknowledgement of its partition and the next
rebalance. Now the command is dead-lettered with the reason, counted, and its topic reported
in /ready, and the partition goes on."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest

from tests.support.flows import by_type, publish_partners
from tests.support.stack import PULSAR_ADMIN_URL

pytestmark = pytest.mark.stack


def _terminate(topic: str) -> None:
    """Terminate a topic with Pulsar's admin API: it takes no message any more, for good."""
    path = topic.replace("://", "/")
    req = urllib.request.Request(f"{PULSAR_ADMIN_URL}/admin/v2/{path}/terminate", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status in (200, 204)


async def test_a_command_refused_for_good_is_dead_lettered_and_the_partition_goes_on(
        spawn, participants, taps, names) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)  # its producers are open
    await asyncio.to_thread(_terminate, names.alianzas_commands)
    await publish_partners(participants, 10)

    # One per saga; a replayed event may dead-letter its command again first (at least once).
    await taps["dead"].wait_for(lambda t: len({json.loads(m.data)["sagaid"] for m in t.messages}) >= 10, 60,
                                "10 sagas' CreateAlliance dead-lettered")
    dead = [m for m in taps["dead"].messages]
    commands = [json.loads(m.data) for m in dead]
    # The command itself, whole; one per saga (a replayed event may dead-letter it again,
    # under the same id: at least once).
    assert {c["type"] for c in commands} == {"CreateAlliance"}
    assert len({c["id"] for c in commands}) == len({c["sagaid"] for c in commands}) == 10
    for m, c in zip(dead, commands, strict=True):
        assert "TopicTerminated" in m.properties["reason"], m.properties
        assert m.properties["origin"] == names.alianzas_commands
        assert m.properties["message_id"] == c["id"]
    # The other command of each event (SagaStarted, another topic) went out as usual.
    await taps["lifecycle"].wait_for(
        lambda t: len({e["sagaid"] for e in by_type(t).get("SagaStarted", [])}) == 10, 30, "10 SagaStarted")

    # Every outbox record was sent or dead-lettered: nothing holds the outbox. (The bridge
    # process reports its figures to the worker every half second: wait for the report that
    # counts the ten.)
    dead_lettered = (r'saga_commands_dead_lettered_total'
                     r'\{reason="TopicTerminated",type="CreateAlliance"\} (\d+)')
    for _ in range(100):
        _, metrics = await worker.get("/metrics")
        counted = re.search(dead_lettered, metrics)
        if "saga_outbound_events_waiting 0" in metrics and counted and int(counted.group(1)) >= 10:
            break
        await asyncio.sleep(0.2)
    assert "saga_outbound_events_waiting 0" in metrics
    assert counted is not None and int(counted.group(1)) >= 10, metrics
    status, ready = await worker.get("/ready")
    assert status == 503 and ready["checks"]["pulsar"]["ok"] is False
    assert ready["checks"]["pulsar"]["failing_topics"] == {names.alianzas_commands: "TopicTerminated"}
