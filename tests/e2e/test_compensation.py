"""A compensation that fails is retried with backoff, a bounded number of times; then the saga
says a person must look. It is never reported compensated when it was not."""

from __future__ import annotations

import pytest

from simulators.participants import Behaviour
from tests.support.flows import by_type, ended, publish_partners

pytestmark = pytest.mark.stack

FAST_RETRIES = {"SAGA_BACKOFF_S": "0.2", "SAGA_UNDO_MAX_ATTEMPTS": "3", "DEADLINE_TICK_S": "0.1"}


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=1.0, fail_revert=1.0)], ids=["reverts-fail"])
async def test_an_undo_that_keeps_failing_ends_in_compensation_failed(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(env=FAST_RETRIES)
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 20)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 20, 60, "20 sagas to give up")

    finals = ended(taps["lifecycle"])
    assert all(types == ["SagaFailed"] for types in finals.values())
    notices = [e for e in taps["lifecycle"].events() if e["type"] == "SagaFailed"]
    assert all(e["data"]["needs_attention"] and e["data"]["status"] == "compensation_failed" for e in notices)
    # Exactly SAGA_UNDO_MAX_ATTEMPTS distinct RevertPartner commands per saga, spaced by backoff.
    reverts = by_type(taps["integraciones"])["RevertPartner"]
    per_saga: dict[str, set[str]] = {}
    for c in reverts:
        per_saga.setdefault(c["sagaid"], set()).add(c["id"])
    assert set(per_saga) == set(finals)
    assert all(len(ids) == 3 for ids in per_saga.values())
    saga_id = next(iter(finals))
    status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert status == 200 and body["status"] == "compensation_failed"
    assert "gave up after 3 attempts" in body["reason"]


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=1.0, fail_revert=0.5)], ids=["half-fail"])
async def test_an_undo_that_fails_then_succeeds_ends_compensated(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    # Each attempt fails with probability 0.5: 30 attempts and a short backoff cap make
    # "never succeeds" (0.5**30) and a long tail of backoffs impossible in practice.
    worker = spawn(env={**FAST_RETRIES, "SAGA_UNDO_MAX_ATTEMPTS": "30", "SAGA_BACKOFF_MAX_S": "0.4"})
    await worker.wait_ready(timeout=30)
    await publish_partners(participants, 30)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 30, 90, "30 sagas to end")
    finals = ended(taps["lifecycle"])
    assert all(types == ["SagaCompensated"] for types in finals.values())
    assert participants.counts["revert_failed"] > 0  # some undos did fail first
    assert participants.counts["partner_reverted"] == 30
