"""Malformed messages among valid ones: every bad one reaches the dead-letter topic with
its original bytes (the partner's personal data masked, the original sealed) and a reason,
the valid sagas are unaffected, the worker stays up."""

from __future__ import annotations

import json
import uuid

import pytest

from domain.privacy import redacted_message
from runtime.settings import Settings
from tests.support.flows import ended, partner_created, publish_partners
from wire.cloudevents import encode_event

pytestmark = pytest.mark.stack


def _ce(**over: object) -> bytes:
    ce: dict[str, object] = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "AllianceCreated",
                             "source": "/gestion-de-alianzas", "datacontenttype": "application/json",
                             "data": {"partner_id": str(uuid.uuid4()), "alliance_id": "a-1"}}
    ce.update(over)
    return json.dumps({k: v for k, v in ce.items() if v is not ...}).encode()


def malformed(n: int) -> tuple[bytes, str]:
    """The n-th malformed message (20 kinds, cycled) and a word its reason must contain."""
    kinds: list[tuple[bytes, str]] = [
        (b"not json at all " + str(n).encode(), "not JSON"),
        (b"\xff\xfe\x00binary" + str(n).encode(), "not JSON"),
        (b"", "not JSON"),
        (json.dumps([n, "a list"]).encode(), "not a CloudEvent"),
        (_ce(id=...), "missing id"),
        (_ce(type=...), "missing"),
        (_ce(specversion="0.3"), "specversion"),
        (_ce(type="PartnerExploded"), "unknown event type"),
        (_ce(data=...), "data must be an object"),
        (_ce(data="a string"), "data must be an object"),
        (_ce(data={"alliance_id": "a"}), "partner_id"),
        (_ce(data={"partner_id": 12345, "alliance_id": "a"}), "partner_id"),
        (_ce(id=42), "id"),
        (_ce(source=..., service_name=...), "source"),
        (encode_event("PartnerCreated", str(uuid.uuid4()), {"partner_id": "p", "nombre": "X",
                      "email": "not-an-email"}, source="/x"), "email"),
        (encode_event("PartnerCreated", str(uuid.uuid4()), {"partner_id": "p", "email": "a@b.c"},
                      source="/x"), "nombre"),
        (_ce(data={"partner_id": "p", "alliance_id": "a", "pad": "x" * 70_000}), "oversized"),
        # Well-formed, but no saga to match: nobody created these partners.
        (_ce(), "no saga"),
        (encode_event("PartnerReverted", str(uuid.uuid4()), {"partner_id": str(uuid.uuid4())},
                      source="/x"), "no saga"),
        (encode_event("PartnerCreationFailed", str(uuid.uuid4()), {"reason": "x"}, source="/x"),
         "no saga"),
    ]
    return kinds[n % len(kinds)]


async def test_two_hundred_malformed_messages_are_dead_lettered_with_reasons(
        spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    bad = [malformed(n) for n in range(200)]
    good_ids: list[str] = []
    for n, (payload, _) in enumerate(bad):
        topic = participants.partner_events if n % 2 else participants.alliance_events
        await participants.publish(topic, payload)
        if n % 2 == 0:  # interleave valid sagas
            good_ids += await publish_partners(participants, 1)
    await taps["dead"].wait_for(lambda t: len(t.messages) >= 200, 60, "200 dead letters")
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) >= len(good_ids), 60, "valid sagas")

    dead = taps["dead"].messages
    assert len(dead) == 200
    # Each exactly once: as received, or with the partner's personal data masked and the
    # original sealed beside it, which the worker's key opens (nothing lost, nothing in clear).
    assert sorted(m.data for m in dead) == sorted(redacted_message(p) for p, _ in bad)
    sealer = Settings(DATADIR=str(worker.datadir)).dead_letter_sealer()
    masked_ones = [m for m in dead if "sealed" in m.properties]
    assert masked_ones and len(masked_ones) == sum(1 for p, _ in bad if redacted_message(p) != p)
    assert {sealer.unseal(m.properties["sealed"]) for m in masked_ones} == {
        p for p, _ in bad if redacted_message(p) != p}
    # A reason for each, that says what was wrong.
    reason_for = {m.data: m.properties.get("reason", "") for m in dead}
    for payload, word in bad:
        reason = reason_for[redacted_message(payload)]
        assert word.lower() in reason.lower(), (payload[:80], reason)
    assert {m.properties["origin"] for m in dead} == {participants.partner_events,
                                                      participants.alliance_events}
    # Valid sagas unaffected; the worker still up.
    assert len(ended(taps["lifecycle"])) == len(good_ids) == 100
    assert all(types == ["SagaCompleted"] for types in ended(taps["lifecycle"]).values())
    assert worker.proc is not None and worker.proc.poll() is None
    status, _ = await worker.get("/health")
    assert status == 200


async def test_a_duplicate_partner_created_for_a_partner_with_a_saga_opens_no_second_saga(
        spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    pid = str(uuid.uuid4())
    await participants.publish(participants.partner_events, partner_created(pid, 1), pid)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 1, 30, "the saga to end")
    # Another PartnerCreated for the same partner (a new event id): a duplicate, not a new saga.
    await participants.publish(participants.partner_events, partner_created(pid, 1), pid)
    await participants.publish(participants.partner_events, partner_created(str(uuid.uuid4()), 2))
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 2, 30, "the second partner's saga")
    started = [e for e in taps["lifecycle"].events() if e["type"] == "SagaStarted"]
    assert len({e["sagaid"] for e in started}) == 2
    saga_id = next(e["sagaid"] for e in started if e["data"]["partner_id"] == pid)
    status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert status == 200 and body["status"] == "completed" and body["ignored"] == 1
