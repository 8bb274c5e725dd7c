"""The partner-creation saga end to end: Pulsar in, Faust on Kafka, Pulsar out, with the
participant simulators answering. Outcomes are checked against what the simulators did."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from domain import ids
from simulators.participants import Behaviour, _share
from tests.support.flows import by_type, ended, outcome_counts, publish_partners

pytestmark = pytest.mark.stack


def _expected(partner_ids: list[str], fail_alliance: float) -> dict[str, str]:
    """What each partner's saga must end as: the simulators fail by a hash of the saga id."""
    out = {}
    for pid in partner_ids:
        saga_id = ids.saga_id_for_partner(pid)
        failed = _share(saga_id, "fail-alliance") < fail_alliance
        out[saga_id] = "SagaCompensated" if failed else "SagaCompleted"
    return out


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour(fail_alliance=0.1)


async def test_a_thousand_sagas_through_pulsar_with_ten_percent_alliance_failures(
        spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    partner_ids = await publish_partners(participants, 1000)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) >= 1000, 240, "1000 sagas to end")

    finals = ended(taps["lifecycle"])
    assert len(finals) == 1000
    assert all(len(types) == 1 for types in finals.values()), "a saga ended twice"
    assert {s: types[0] for s, types in finals.items()} == _expected(partner_ids, 0.1)
    counts = outcome_counts(taps["lifecycle"])
    sims = participants.counts
    assert counts["SagaCompleted"] == sims["alliance_created"]
    assert counts["SagaCompensated"] == sims["alliance_failed"] == sims["partner_reverted"]
    assert counts["SagaCompleted"] + counts["SagaCompensated"] == 1000
    assert 50 <= counts["SagaCompensated"] <= 150  # ~10% of 1000
    # Every compensated saga's partner was reverted, and nobody else's.
    compensated = {s for s, t in finals.items() if t == ["SagaCompensated"]}
    reverts = {c["sagaid"] for c in by_type(taps["integraciones"]).get("RevertPartner", [])}
    assert reverts == compensated
    # The live state agrees, asked over HTTP.
    for saga_id in list(finals)[:50]:
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200
        want = "completed" if finals[saga_id] == ["SagaCompleted"] else "compensated"
        assert body["status"] == want


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.1, duplicate_replies=True)],
                         ids=["replies-twice"])
async def test_every_inbound_event_delivered_twice_changes_nothing(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    # Every PartnerCreated twice; the simulators send every reply twice.
    partner_ids = await publish_partners(participants, 200, twice=True)
    expected = _expected(partner_ids, 0.1)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) >= 200, 120, "200 sagas to end")
    # Let the duplicates drain, then compare.
    await taps["alianzas"].wait_for(lambda t: len(t.messages) >= 200, 30, "CreateAlliance commands")

    finals = ended(taps["lifecycle"])
    assert {s: types[0] for s, types in finals.items()} == expected
    assert all(len(set(types)) == 1 for types in finals.values())
    # Distinct command ids: exactly one CreateAlliance per saga, one RevertPartner per
    # compensated saga, one lifecycle notice per saga per kind. Re-sends reuse the ids.
    create = {c["id"] for c in by_type(taps["alianzas"])["CreateAlliance"]}
    revert = {c["id"] for c in by_type(taps["integraciones"]).get("RevertPartner", [])}
    assert len(create) == 200
    assert len(revert) == sum(1 for v in expected.values() if v == "SagaCompensated")
    # The orchestrator did see the duplicates: it re-sent commands with their first ids,
    # which the participants recognised.
    assert participants.counts["duplicate_commands"] > 0
    lifecycle_ids = Counter(e["type"] for e in {e["id"]: e for e in taps["lifecycle"].events()}.values())
    assert lifecycle_ids["SagaStarted"] == 200
    assert lifecycle_ids["SagaCompleted"] + lifecycle_ids["SagaCompensated"] == 200


async def test_a_worker_killed_mid_load_leaves_no_saga_behind(
        spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL with sagas at every step and commands on their way to Pulsar: the next worker
    replays what was not acknowledged and finishes every saga, each ending once, as the
    simulators decided; a re-sent command keeps its id. (Replies never time out here, so
    every CreateAlliance is attempt 1.)"""
    patient = {"SAGA_REPLY_TIMEOUT_S": "300"}
    first = spawn("a", env=patient)
    await first.wait_ready(timeout=30)
    partner_ids = await publish_partners(participants, 600)
    expected = _expected(partner_ids, 0.1)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) >= 60, 60, "the first sagas to end")
    first.kill(signal.SIGKILL)
    done_before = len(ended(taps["lifecycle"]))
    assert done_before < 600, "every saga ended before the kill: nothing was in flight"

    second = spawn("b", env=patient)
    await second.wait_ready(timeout=60)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) >= 600, 120, "600 sagas to end")
    assert ended(taps["lifecycle"]) == {s: [t] for s, t in expected.items()}
    create = by_type(taps["alianzas"])["CreateAlliance"]
    assert len({c["id"] for c in create}) == 600
    notices = taps["lifecycle"].events()
    print(f"\n{done_before} of 600 sagas had ended at the kill; afterwards {len(create)} CreateAlliance "
          f"sent for 600 ids, {len(notices)} lifecycle notices for {len({e['id'] for e in notices})} ids")
