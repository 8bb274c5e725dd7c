"""Every status a saga can rest in, against every event type: outcome, status, commands.

The expected table is written out by hand; nothing in it is computed from the code under
test. Each cell delivers one fresh event to a saga driven into the row's status, checks the
decision, then delivers the same event again and checks that the redelivery is a duplicate.
"""

from __future__ import annotations

from typing import Any

import pytest
import saga_kit as k

from domain import ALL_EVENT_TYPES, SagaStatus, decide
from domain.messages import ErasureRequested

APPLIED, IGNORED, REJECTED = "applied", "ignored", "rejected"
PCIP = "partner_creation_in_progress"
ACIP = "alliance_creation_in_progress"
COMP = "compensating"

EVENT_KEYS = (
    "PartnerCreated", "PartnerCreationFailed", "PartnerReverted", "PartnerRevertFailed",
    "AllianceCreated", "AllianceCreationFailed", "AllianceCancelled", "StartSaga",
    "DeadlineReached:matching", "DeadlineReached:stale", "RetryRequested", "CancelRequested",
    "ErasureRequested",
)

# Events of the Alpes flow only (test_alpes_flow.py); a partner-creation saga ignores them
# (test_alpes_events_are_ignored_by_a_partner_creation_saga below).
ALPES_ONLY = {"PartnerDeleted", "PartnerDeleteFailed", "ContractCreated", "ContractApproved",
              "ContractRejected"}

# The status each row's saga rests in.
STATUS_OF = {
    "partner_creation_in_progress": PCIP,
    "alliance_creation_in_progress": ACIP,
    "compensating_waiting_reply": COMP,
    "compensating_waiting_retry": COMP,
    "completed": "completed",
    "failed": "failed",
    "compensated": "compensated",
    "compensation_failed": "compensation_failed",
}

# (step, phase, kind, attempt). For a live saga "matching" is its current deadline; for a
# finished one it is the last deadline it had, firing after the saga ended.
MATCHING = {
    "partner_creation_in_progress": ("create_partner", "forward", "reply", 1),
    "alliance_creation_in_progress": ("create_alliance", "forward", "reply", 1),
    "compensating_waiting_reply": ("create_partner", "compensation", "reply", 1),
    "compensating_waiting_retry": ("create_partner", "compensation", "retry", 1),
    "completed": ("create_alliance", "forward", "reply", 1),
    "failed": ("create_partner", "forward", "reply", 1),
    "compensated": ("create_partner", "compensation", "reply", 1),
    "compensation_failed": ("create_partner", "compensation", "reply", 5),
}
STALE = {
    "partner_creation_in_progress": ("create_partner", "forward", "retry", 1),
    "alliance_creation_in_progress": ("create_partner", "forward", "reply", 1),
    "compensating_waiting_reply": ("create_alliance", "forward", "reply", 1),
    "compensating_waiting_retry": ("create_partner", "compensation", "reply", 1),
    "completed": ("create_partner", "forward", "reply", 1),
    "failed": ("create_partner", "forward", "reply", 2),
    "compensated": ("create_alliance", "forward", "reply", 1),
    "compensation_failed": ("create_partner", "compensation", "retry", 4),
}


def _ignored_everywhere(status: str) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {key: (IGNORED, status, ()) for key in EVENT_KEYS}


EXPECTED: dict[str, dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "partner_creation_in_progress": {
        **_ignored_everywhere(PCIP),
        "PartnerCreated": (APPLIED, ACIP, ("CreateAlliance",)),
        "PartnerCreationFailed": (APPLIED, "failed", ("SagaFailed",)),
        # No reply in time: wait out the backoff before the next attempt (no command yet).
        "DeadlineReached:matching": (APPLIED, PCIP, ()),
        # CreatePartner may have been carried out: undone by its command ids.
        "CancelRequested": (APPLIED, COMP, ("RevertPartner",)),
    },
    "alliance_creation_in_progress": {
        **_ignored_everywhere(ACIP),
        "AllianceCreated": (APPLIED, "completed", ("SagaCompleted",)),
        "AllianceCreationFailed": (APPLIED, COMP, ("RevertPartner",)),
        "DeadlineReached:matching": (APPLIED, ACIP, ()),
        # CreateAlliance may have been carried out: it is undone first.
        "CancelRequested": (APPLIED, COMP, ("CancelAlliance",)),
    },
    "compensating_waiting_reply": {
        **_ignored_everywhere(COMP),
        "PartnerReverted": (APPLIED, "compensated", ("SagaCompensated",)),
        "PartnerRevertFailed": (APPLIED, COMP, ()),
        "AllianceCreated": (APPLIED, COMP, ("CancelAlliance",)),
        "DeadlineReached:matching": (APPLIED, COMP, ()),
    },
    "compensating_waiting_retry": {
        **_ignored_everywhere(COMP),
        "PartnerReverted": (APPLIED, "compensated", ("SagaCompensated",)),
        "AllianceCreated": (APPLIED, COMP, ("CancelAlliance",)),
        "DeadlineReached:matching": (APPLIED, COMP, ("RevertPartner",)),
    },
    "completed": {
        **_ignored_everywhere("completed"),
        # The right to erasure (test_erasure.py): the data goes, the status stays.
        "ErasureRequested": (APPLIED, "completed", ("PersonalDataErased",)),
    },
    "failed": {
        **_ignored_everywhere("failed"),
        "ErasureRequested": (APPLIED, "failed", ("PersonalDataErased",)),
        # The partner the saga gave up on was created after all: undo it, once.
        "PartnerCreated": (APPLIED, "failed", ("RevertPartner",)),
    },
    "compensated": {
        **_ignored_everywhere("compensated"),
        "AllianceCreated": (APPLIED, "compensated", ("CancelAlliance",)),
        "ErasureRequested": (APPLIED, "compensated", ("PersonalDataErased",)),
    },
    "compensation_failed": {
        **_ignored_everywhere("compensation_failed"),
        "AllianceCreated": (APPLIED, "compensation_failed", ("CancelAlliance",)),
        "RetryRequested": (APPLIED, COMP, ("RevertPartner",)),
    },
}

# Cells that show a known defect, as strict xfails (none open: the three found by the
# first run of this table were fixed in domain/transition.py).
BUGS: dict[tuple[str, str], str] = {}


def matrix_event(event_key: str, row: str) -> object:
    eid = f"matrix-{event_key}"
    makers = {
        "PartnerCreated": lambda: k.partner_created(eid),
        "PartnerCreationFailed": lambda: k.partner_creation_failed(eid),
        "PartnerReverted": lambda: k.partner_reverted(eid),
        "PartnerRevertFailed": lambda: k.partner_revert_failed(eid),
        "AllianceCreated": lambda: k.alliance_created(eid),
        "AllianceCreationFailed": lambda: k.alliance_creation_failed(eid),
        "AllianceCancelled": lambda: k.alliance_cancelled(eid),
        "StartSaga": lambda: k.start(eid),
        "DeadlineReached:matching": lambda: k.deadline(*MATCHING[row], eid=eid),
        "DeadlineReached:stale": lambda: k.deadline(*STALE[row], eid=eid),
        "RetryRequested": lambda: k.retry_requested(eid),
        "CancelRequested": lambda: k.cancel_requested(eid),
        "ErasureRequested": lambda: ErasureRequested(event_id=eid, saga_id=k.SAGA_ID),
    }
    return makers[event_key]()


def _cells() -> list[Any]:
    cells: list[Any] = []
    for row, expected in EXPECTED.items():
        for event_key in EVENT_KEYS:
            bug = BUGS.get((row, event_key))
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            cells.append(pytest.param(row, event_key, expected[event_key],
                                      id=f"{row}-x-{event_key}", marks=marks))
    return cells


# `transitions` holds the last event's status changes: an ignored event has none.
_UNTOUCHED_BY_IGNORE = {"version", "updated_at", "applied", "ignored", "transitions"}


@pytest.mark.parametrize(("row", "event_key", "expected"), _cells())
def test_cell(row: str, event_key: str, expected: tuple[str, str, tuple[str, ...]]) -> None:
    before = k.DRIVERS[row]().state
    assert before is not None
    event = matrix_event(event_key, row)
    now = before.updated_at + 100.0

    d = decide(before, event, now)  # type: ignore[arg-type]
    assert d.state is not None
    assert (d.outcome, str(d.state.status), k.types(d.commands)) == expected, d.reason
    assert d.state.version == before.version + 1
    assert d.state.updated_at == now
    assert d.state.applied[-1].event_id == event.event_id  # type: ignore[attr-defined]
    if d.outcome == IGNORED:
        assert d.reason
        assert d.transitions == ()
        assert d.state.ignored == before.ignored + 1
        assert d.state.model_dump(exclude=_UNTOUCHED_BY_IGNORE) == before.model_dump(
            exclude=_UNTOUCHED_BY_IGNORE)
    elif event_key == "ErasureRequested":  # an entry in the history, without a status change
        assert [(t.from_status, t.to_status) for t in d.transitions] == [(before.status, before.status)]
    elif d.state.status == before.status:
        assert d.transitions == ()
    else:
        assert d.transitions[0].from_status == before.status
        assert d.transitions[-1].to_status == d.state.status
        assert all(t.version == d.state.version for t in d.transitions)

    again = decide(d.state, event, now + 1.0)  # type: ignore[arg-type]
    assert again.outcome == "duplicate"
    assert again.state == d.state
    assert again.commands == d.commands
    assert again.transitions == ()


NO_SAGA = {
    "StartSaga": (APPLIED, PCIP, ("SagaStarted", "CreatePartner")),
    "PartnerCreated": (APPLIED, ACIP, ("SagaStarted", "CreateAlliance")),
    "PartnerCreationFailed": (REJECTED, None, ()),
    "PartnerReverted": (REJECTED, None, ()),
    "PartnerRevertFailed": (REJECTED, None, ()),
    "AllianceCreated": (REJECTED, None, ()),
    "AllianceCreationFailed": (REJECTED, None, ()),
    "AllianceCancelled": (REJECTED, None, ()),
    "DeadlineReached": (REJECTED, None, ()),
    "RetryRequested": (REJECTED, None, ()),
    "CancelRequested": (REJECTED, None, ()),
    "ErasureRequested": (REJECTED, None, ()),
}


@pytest.mark.parametrize(("event_key", "expected"), list(NO_SAGA.items()), ids=list(NO_SAGA))
def test_no_saga(event_key: str, expected: tuple[str, str | None, tuple[str, ...]]) -> None:
    key = "DeadlineReached:matching" if event_key == "DeadlineReached" else event_key
    event = matrix_event(key, "partner_creation_in_progress")
    d = decide(None, event, k.T0)  # type: ignore[arg-type]
    status = None if d.state is None else str(d.state.status)
    assert (d.outcome, status, k.types(d.commands)) == expected, d.reason
    if d.outcome == REJECTED:
        assert d.state is None and d.transitions == () and d.reason
    else:
        assert d.state is not None
        assert d.state.version == 1
        assert d.transitions[0].from_status is None
        assert d.transitions[0].to_status == SagaStatus.STARTED


@pytest.mark.parametrize("row", list(STATUS_OF))
def test_driver_reaches_row(row: str) -> None:
    state = k.DRIVERS[row]().state
    assert state is not None
    assert str(state.status) == STATUS_OF[row]
    live = not state.terminal
    assert k.deadline_key(state) == (MATCHING[row] if live else None)
    assert live == (row in {"partner_creation_in_progress", "alliance_creation_in_progress",
                            "compensating_waiting_reply", "compensating_waiting_retry"})


def test_table_covers_every_event_type_and_resting_status() -> None:
    assert {key.split(":")[0] for key in EVENT_KEYS} == set(ALL_EVENT_TYPES) - ALPES_ONLY
    assert set(NO_SAGA) == set(ALL_EVENT_TYPES) - ALPES_ONLY
    assert all(set(row) == set(EVENT_KEYS) for row in EXPECTED.values())
    transient = {"started", "partner_created", "alliance_created"}
    assert set(STATUS_OF.values()) == {s.value for s in SagaStatus} - transient
    resulting = {status for row in EXPECTED.values() for _, status, _ in row.values()}
    assert not resulting & transient
    assert set(BUGS) <= {(row, key) for row in EXPECTED for key in EVENT_KEYS}
