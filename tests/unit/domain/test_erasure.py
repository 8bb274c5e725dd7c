"""The right to erasure in the domain: a finished saga forgets the partner's personal data and
keeps everything else; a saga that runs, or waits for a person, refuses."""

from __future__ import annotations

import json

import pytest
from saga_kit import (
    PARTNER,
    Saga,
    compensated,
    compensation_failed,
    completed,
    failed,
    in_alliance_creation,
    in_partner_creation,
    start,
)

from domain import SagaState
from domain.messages import ErasureRequested
from domain.privacy import ERASED
from domain.state import ErasedPartner


def erase(eid: str = "ev-erase") -> ErasureRequested:
    return ErasureRequested(event_id=eid, saga_id="saga-1")


def personal_values() -> list[str]:
    return [v for v in PARTNER.model_dump().values() if v]


@pytest.mark.parametrize("make", [completed, failed, compensated], ids=lambda f: f.__name__)
def test_a_finished_saga_forgets_the_partner_and_keeps_the_rest(make: type[Saga]) -> None:
    saga = make()
    before = saga.state
    assert before is not None and any(v in before.model_dump_json() for v in personal_values())

    d = saga.feed(erase())

    after = saga.state
    assert after is not None and d.outcome == "applied"
    assert after.partner == ErasedPartner() and after.partner.email == ERASED
    assert after.erased_at == saga.now
    stored = after.model_dump_json()
    assert not any(v in stored for v in personal_values()), stored
    # Ids, status and how it ended stay; the erasure is in the history, as no status change.
    assert (after.status, after.saga_id, after.partner_id, after.alliance_id, after.correlation_id) == (
        before.status, before.saga_id, before.partner_id, before.alliance_id, before.correlation_id)
    assert [(t.from_status, t.to_status, t.event_type) for t in d.transitions] == [
        (before.status, before.status, "ErasureRequested")]
    assert [c.type for c in d.commands] == ["PersonalDataErased"]
    assert not any(v in json.dumps(d.commands[0].data) for v in personal_values())
    # A stored erased state reads back as erased.
    assert SagaState.model_validate_json(stored) == after


def test_an_erased_saga_re_sends_nothing_for_a_redelivered_event() -> None:
    saga = completed()
    saga.feed(erase())
    again = saga.feed(start(), expect="duplicate")  # the start, redelivered after the erasure
    assert again.commands == ()


def test_erasing_twice_changes_nothing_more() -> None:
    saga = completed()
    notice = saga.feed(erase("ev-erase-1")).commands
    first = saga.state
    d = saga.feed(erase("ev-erase-2"), expect="ignored")
    assert d.expected and "already erased" in (d.reason or "")
    assert saga.state is not None and first is not None
    assert (saga.state.partner, saga.state.erased_at) == (first.partner, first.erased_at)
    # The same request delivered again is a duplicate: its notice again, under the same id.
    assert saga.feed(erase("ev-erase-1"), expect="duplicate").commands == notice


@pytest.mark.parametrize("make", [in_partner_creation, in_alliance_creation, compensation_failed],
                         ids=lambda f: f.__name__)
def test_a_running_saga_or_one_waiting_for_a_person_refuses(make: type[Saga]) -> None:
    saga = make()
    status = saga.status
    d = saga.feed(erase(), expect="ignored")
    assert not d.expected and "erasure applies to a saga that ended" in (d.reason or "")
    assert saga.state is not None and saga.state.partner == PARTNER and saga.status == status
    assert saga.state.erased_at is None and d.commands == ()


def test_email_addresses_quoted_in_the_reason_go_too() -> None:
    saga = failed()
    assert saga.state is not None
    quoted = saga.state.model_copy(update={"reason": f"email {PARTNER.email} is taken"})
    saga.state = quoted
    saga.feed(erase())
    assert saga.state.reason == f"email {ERASED} is taken"


def test_a_partner_named_like_the_placeholder_is_still_a_partner() -> None:
    saga = in_partner_creation()
    assert saga.state is not None
    named = saga.state.model_copy(update={"partner": PARTNER.model_copy(update={"nombre": ERASED})})
    back = SagaState.model_validate_json(named.model_dump_json())
    assert back.partner == named.partner and not isinstance(back.partner, ErasedPartner)
