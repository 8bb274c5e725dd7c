"""Versioned saga definitions (issue #24): a saga runs the flow version it started with to its
end, new sagas take the newest version, and a version no longer deployed is refused with the
reason, never replaced by another."""

from __future__ import annotations

import pytest

from domain import Definitions, SagaState, UnknownDefinition, decide, partner_creation
from domain.messages import AllianceCreated, ContractApproved, PartnerCreated, PartnerData, StartSaga
from tests.support.definitions import V2_CREATE_PARTNER_TIMEOUT_S, partner_creation_v2

T0 = 1_800_000_000.0
PARTNER = PartnerData(nombre="Ana", email="ana@example.com")


def _start(saga_id: str, deployed: Definitions) -> SagaState:
    d = decide(None, StartSaga(event_id=f"{saga_id}-start", saga_id=saga_id, correlation_id=saga_id,
                               partner=PARTNER), T0, deployed.newest("partner-creation"))
    assert d.outcome == "applied" and d.state is not None
    return d.state


def _step(state: SagaState, event: object, deployed: Definitions, at: float) -> tuple[SagaState, list[str]]:
    d = decide(state, event, at, deployed.of(state))  # type: ignore[arg-type]
    assert d.outcome == "applied" and d.state is not None, d.reason
    return d.state, [c.type for c in d.commands]


def _through_alliance(state: SagaState, deployed: Definitions) -> tuple[SagaState, list[str]]:
    sid = state.saga_id
    state, _ = _step(state, PartnerCreated(event_id=f"{sid}-p", saga_id=sid, partner_id=f"p-{sid}"),
                     deployed, T0 + 1)
    return _step(state, AllianceCreated(event_id=f"{sid}-a", saga_id=sid, partner_id=f"p-{sid}",
                                        alliance_id=f"a-{sid}"), deployed, T0 + 2)


def test_sagas_in_flight_finish_under_their_version_and_new_ones_take_the_new_one() -> None:
    before = Definitions([partner_creation()])
    old = _start("old", before)
    assert (old.flow, old.flow_version) == ("partner-creation", 1)
    assert old.deadline is not None and old.deadline.due_at == T0 + 30.0
    # Version 2 is deployed beside version 1 while "old" waits for its partner.
    after = Definitions([partner_creation(), partner_creation_v2()])
    assert after.newest("partner-creation").version == 2 and after.versions("partner-creation") == [1, 2]
    new = _start("new", after)
    assert new.flow_version == 2 and new.deadline is not None
    assert new.deadline.due_at == T0 + V2_CREATE_PARTNER_TIMEOUT_S  # the changed timeout
    # The old saga ends as it began: no compliance step.
    old, _ = _through_alliance(old, after)
    assert old.status == "completed" and old.flow_version == 1
    # The new one takes the new path: it waits for compliance, then completes.
    new, _ = _through_alliance(new, after)
    assert new.status == "awaiting_compliance"
    new, _ = _step(new, ContractApproved(event_id="new-c", saga_id="new", partner_id="p-new"), after, T0 + 3)
    assert new.status == "completed"
    assert new.done_steps == ("create_partner", "create_alliance", "await_compliance")


def test_a_version_that_is_not_deployed_is_refused_not_replaced() -> None:
    old = _start("old", Definitions([partner_creation()]))
    only_v2 = Definitions([partner_creation_v2()])
    with pytest.raises(UnknownDefinition, match="partner-creation version 1 is not deployed"):
        only_v2.of(old)
    with pytest.raises(ValueError, match="declared twice"):
        Definitions([partner_creation(), partner_creation()])
    with pytest.raises(UnknownDefinition):
        Definitions([]).newest("partner-creation")


def test_a_state_stored_before_versions_runs_version_1() -> None:
    raw = _start("x", Definitions([partner_creation()])).model_dump(mode="json")
    del raw["flow_version"]
    assert SagaState.model_validate(raw).flow_version == 1
