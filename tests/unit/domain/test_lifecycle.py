"""After a saga's end (domain.lifecycle): what retention may remove, the tombstone it keeps,
what a repeated start means; and what a compensation cannot undo (issue #20, defects 1, 2,
10 and 11)."""

from __future__ import annotations

import pytest
import saga_kit as k
from test_alpes_flow import alpes, contract, deleted, rejected

from domain import ids
from domain.lifecycle import Tombstone, bury, business_key, on_tombstone, retainable
from domain.messages import PartnerCreated
from domain.state import SagaState, SagaStatus

HORIZON = 1000.0


def ended(status: str, **update: object) -> SagaState:
    s = k.Saga()
    s.feed(k.start())
    assert s.state is not None
    return s.state.model_copy(update={"status": status, "deadline": None, **update})


@pytest.mark.parametrize("status", ["completed", "failed", "compensated"])
def test_an_end_nobody_must_act_on_is_for_retention(status: str) -> None:
    assert retainable(ended(status))


@pytest.mark.parametrize("status", ["compensation_failed", "started", "compensating",
                                    "partner_creation_in_progress"])
def test_a_saga_that_needs_a_person_or_runs_is_never_for_retention(status: str) -> None:
    state = ended(status)
    assert not retainable(state)
    with pytest.raises(ValueError, match="not for retention"):
        bury(state, k.T0)


def test_a_tombstone_keeps_ids_and_end_status_not_personal_data() -> None:
    state = ended("completed", partner_id=k.PARTNER_ID)
    tomb = bury(state, k.T0 + 5)
    raw = tomb.model_dump_json().encode()
    assert Tombstone.is_one(raw) and b"acme" not in raw.lower()
    assert (tomb.version, tomb.ended_at) == (state.version + 1, state.updated_at)
    assert tomb.business_key == k.CORRELATION_ID
    assert business_key(state.model_copy(update={"origin": "partner_event"})) == k.PARTNER_ID


def test_a_start_within_the_horizon_is_a_duplicate_of_the_finished_saga() -> None:
    tomb = bury(ended("completed"), k.T0)
    v = on_tombstone(tomb, k.start("another-start"), tomb.ended_at + HORIZON - 1, HORIZON)
    assert v.kind == "duplicate" and "duplicate of a finished saga" in v.reason and v.saga_id is None
    v = on_tombstone(tomb, k.alliance_created(), tomb.ended_at + 5 * HORIZON, HORIZON)
    assert v.kind == "duplicate" and "for a finished saga" in v.reason  # a reply never reopens


def test_a_start_after_the_horizon_opens_the_next_generation_under_a_new_id() -> None:
    first_id = ids.saga_id_for_correlation(k.CORRELATION_ID)
    tomb = bury(ended("completed", saga_id=first_id), k.T0)
    v = on_tombstone(tomb, k.start("later"), tomb.ended_at + HORIZON + 1, HORIZON)
    assert v.kind == "open" and v.generation == 2
    assert v.saga_id == ids.saga_id_generation(first_id, 2) != first_id
    assert v.tombstone is not None and v.tombstone.current == v.saga_id
    assert v.tombstone.version == tomb.version + 1
    # Later starts, and events reaching the first id by the business key, go on to the newer
    # saga; what names the ended saga itself (an operator's retry, a deadline) does not.
    assert on_tombstone(v.tombstone, k.start("x"), 0.0, HORIZON).kind == "pass_on"
    assert on_tombstone(v.tombstone, k.alliance_created(), 0.0, HORIZON, by_key=True).kind == "pass_on"
    assert on_tombstone(v.tombstone, k.retry_requested(), 0.0, HORIZON).kind == "duplicate"
    assert on_tombstone(v.tombstone, k.alliance_created(), 0.0, HORIZON).kind == "duplicate"
    # The second generation's own tombstone opens the third, from the same first id.
    assert v.saga_id is not None
    second = bury(ended("failed", saga_id=v.saga_id, generation=2), k.T0)
    v3 = on_tombstone(second, k.start("much-later"), second.ended_at + HORIZON + 1, HORIZON)
    assert v3.saga_id == ids.saga_id_generation(first_id, 3) and v3.generation == 3


def test_a_compensated_alpes_saga_names_the_contract_it_left_behind() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    s.feed(contract())
    s.feed(rejected())
    d = s.feed(deleted())
    assert s.status == SagaStatus.COMPENSATED
    assert s.state is not None and len(s.state.left_behind) == 1
    assert "await_contract" in s.state.left_behind[0] and "gestion-de-alianzas" in s.state.left_behind[0]
    notice = d.commands[-1]
    assert notice.type == "SagaCompensated" and notice.data["left_behind"] == list(s.state.left_behind)


def test_a_compensation_that_undid_everything_leaves_nothing_behind() -> None:
    s = k.Saga()
    s.feed(k.start())
    s.feed(k.partner_created())
    s.feed(k.alliance_creation_failed())
    s.feed(k.partner_reverted())
    assert s.status == SagaStatus.COMPENSATED and s.state is not None and s.state.left_behind == ()


def test_the_participants_own_announcement_of_a_done_step_is_expected_not_a_problem() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created("http:cmd-1"))  # the bridge's event for integraciones' 201
    echo = PartnerCreated(event_id="partner-creado-1", saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID)
    d = s.feed(echo, expect="ignored")
    assert d.expected and d.commands == ()
    # Another partner's success is no echo: it is undone (a second partner made by a retry).
    other = PartnerCreated(event_id="partner-creado-2", saga_id=k.SAGA_ID, partner_id=k.OTHER_PARTNER_ID)
    d = s.feed(other)
    assert not d.expected and k.types(d.commands) == ("DeletePartner",)
    # In the contract flow the participant announces nothing by itself: a repeat is a duplicate.
    c = k.Saga()
    c.feed(k.start())
    c.feed(k.partner_created())
    d = c.feed(k.partner_created("again"), expect="ignored")
    assert not d.expected
