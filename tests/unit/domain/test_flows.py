"""Whole sagas, event by event: happy path, compensation, retries, timeouts, late replies,
operator actions, idempotence, deterministic ids, versions and the recorded history."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import saga_kit as k

from domain import RetryPolicy, decide, ids, partner_creation
from domain.messages import Command, Destination, StartSaga

PCIP, ACIP = "partner_creation_in_progress", "alliance_creation_in_progress"


def cmd_id(step: str, action: str, attempt: int) -> str:
    return ids.command_id(k.SAGA_ID, step, action, attempt)


def all_commands(s: k.Saga, type_: str | None = None) -> list[Command]:
    return [c for d in s.decisions for c in d.commands if type_ is None or c.type == type_]


def history(s: k.Saga) -> list[tuple[str | None, str]]:
    return [(t.from_status and str(t.from_status), str(t.to_status))
            for d in s.decisions for t in d.transitions]


def never_compensated(s: k.Saga) -> None:
    assert "compensated" not in [to for _, to in history(s)]
    assert not all_commands(s, "SagaCompensated")


# --- forward --------------------------------------------------------------------------------
def test_happy_path_over_http() -> None:
    s = k.Saga()
    d = s.feed(k.start())
    assert k.types(d.commands) == ("SagaStarted", "CreatePartner")
    create = d.commands[1]
    assert create.destination is Destination.INTEGRACIONES
    assert create.command_id == cmd_id("create_partner", "do", 1)
    assert create.data == {"nombre": "Acme SA", "email": "ops@acme.example",
                           "telefono": "+57 1 555 0100", "direccion": None}
    assert k.deadline_key(s.state) == ("create_partner", "forward", "reply", 1)
    assert s.state.deadline.due_at == s.now + 30.0

    d = s.feed(k.partner_created())
    assert k.types(d.commands) == ("CreateAlliance",)
    assert d.commands[0].destination is Destination.ALIANZAS
    assert d.commands[0].data["partner_id"] == k.PARTNER_ID
    assert d.commands[0].data["nombre"] == "Acme SA"
    assert (s.state.partner_id, s.state.done_steps) == (k.PARTNER_ID, ("create_partner",))
    assert k.deadline_key(s.state) == ("create_alliance", "forward", "reply", 1)

    d = s.feed(k.alliance_created())
    assert k.types(d.commands) == ("SagaCompleted",)
    done = d.commands[0]
    assert done.destination is Destination.LIFECYCLE
    assert done.data == {"status": "completed", "partner_id": k.PARTNER_ID,
                         "alliance_id": k.ALLIANCE_ID, "reason": None, "flow": "partner-creation",
                         "needs_attention": False}
    assert (s.status, s.state.deadline, s.state.origin) == ("completed", None, "http")
    assert s.state.done_steps == ("create_partner", "create_alliance")
    assert history(s) == [(None, "started"), ("started", PCIP), (PCIP, "partner_created"),
                          ("partner_created", ACIP), (ACIP, "alliance_created"),
                          ("alliance_created", "completed")]


def test_partner_event_opens_a_saga_at_the_alliance_step() -> None:
    s = k.Saga()
    d = s.feed(k.partner_created(correlation_id=None))
    assert k.types(d.commands) == ("SagaStarted", "CreateAlliance")
    assert (s.status, s.state.origin, s.state.partner_id) == (ACIP, "partner_event", k.PARTNER_ID)
    assert s.state.correlation_id == k.SAGA_ID
    assert {c.correlation_id for c in d.commands} == {k.SAGA_ID}
    assert history(s) == [(None, "started"), ("started", PCIP), (PCIP, "partner_created"),
                          ("partner_created", ACIP)]
    s.feed(k.alliance_created())
    assert s.status == "completed"


def test_partner_creation_failure_fails_with_nothing_to_undo() -> None:
    s = k.failed()
    assert k.types(s.decisions[-1].commands) == ("SagaFailed",)
    assert "email taken" in s.decisions[-1].commands[0].data["reason"]
    assert not all_commands(s, "RevertPartner")
    assert history(s)[-1] == (PCIP, "failed")


# --- compensation ---------------------------------------------------------------------------
def test_compensation_path() -> None:
    s = k.compensating_waiting_reply()
    revert = s.decisions[-1].commands[0]
    assert (revert.type, revert.data) == ("RevertPartner", {"partner_id": k.PARTNER_ID})
    assert revert.command_id == cmd_id("create_partner", "undo", 1)
    assert k.deadline_key(s.state) == ("create_partner", "compensation", "reply", 1)
    d = s.feed(k.partner_reverted())
    assert k.types(d.commands) == ("SagaCompensated",)
    assert d.commands[0].data["needs_attention"] is False
    assert (s.status, s.state.undoing, s.state.deadline, s.state.done_steps) == (
        "compensated", None, None, ())
    assert "quota exceeded" in s.state.reason
    assert history(s)[-2:] == [(ACIP, "compensating"), ("compensating", "compensated")]


@pytest.mark.parametrize(("policy", "waits"), [
    (None, [1.0, 2.0, 4.0, 8.0]),
    (RetryPolicy(max_attempts=5, backoff_s=2.0, backoff_max_s=5.0), [2.0, 4.0, 5.0, 5.0]),
], ids=["default", "capped"])
def test_revert_retries_back_off_then_give_up(policy: RetryPolicy | None,
                                              waits: list[float]) -> None:
    defn = partner_creation({"revert_partner": policy} if policy else None)
    effective = policy or RetryPolicy(max_attempts=5)
    s = k.Saga(defn=defn)
    for ev in (k.start(), k.partner_created(), k.alliance_creation_failed()):
        s.feed(ev)
    for attempt in range(1, 5):
        d = s.feed(k.partner_revert_failed(f"ev-revert-failed-{attempt}"))
        assert (d.commands, s.status) == ((), "compensating")
        assert k.deadline_key(s.state) == ("create_partner", "compensation", "retry", attempt)
        assert s.state.deadline.due_at - s.now == waits[attempt - 1]
        assert waits[attempt - 1] == effective.backoff(attempt)
        d = s.fire()
        assert k.types(d.commands) == ("RevertPartner",)
        assert d.commands[0].command_id == cmd_id("create_partner", "undo", attempt + 1)
        assert s.state.undo_attempt == attempt + 1
        assert k.deadline_key(s.state) == ("create_partner", "compensation", "reply", attempt + 1)
    d = s.feed(k.partner_revert_failed("ev-revert-failed-5"))
    assert (s.status, k.types(d.commands)) == ("compensation_failed", ("SagaFailed",))
    assert d.commands[0].data["needs_attention"] is True
    assert "gave up after 5 attempts" in s.state.reason
    assert s.state.deadline is None
    reverts = [c.command_id for c in all_commands(s, "RevertPartner")]
    assert len(reverts) == len(set(reverts)) == 5
    never_compensated(s)


def test_revert_reply_timeouts_end_in_compensation_failed() -> None:
    s = k.compensating_waiting_reply()
    for attempt in range(1, 5):
        assert s.fire().commands == ()  # no reply in time: wait out the backoff
        assert k.deadline_key(s.state) == ("create_partner", "compensation", "retry", attempt)
        assert k.types(s.fire().commands) == ("RevertPartner",)
    d = s.fire()
    assert (s.status, k.types(d.commands)) == ("compensation_failed", ("SagaFailed",))
    assert d.commands[0].data["needs_attention"] is True
    assert len(all_commands(s, "RevertPartner")) == 5
    never_compensated(s)


# --- forward timeouts ----------------------------------------------------------------------
def test_partner_step_timeouts_retry_then_undo_what_any_attempt_may_have_made() -> None:
    s = k.in_partner_creation()
    for attempt in (2, 3):
        d = s.time_out()
        assert k.types(d.commands) == ("CreatePartner",)
        assert d.commands[0].command_id == cmd_id("create_partner", "do", attempt)
        assert (s.status, s.state.attempt, s.state.deadline.due_at) == (PCIP, attempt, s.now + 30)
    d = s.time_out()
    # Every reply was lost, not necessarily every command: the partner may exist.
    assert (s.status, k.types(d.commands)) == ("compensating", ("RevertPartner",))
    assert d.commands[0].data == {"partner_id": None, "command_ids": [
        cmd_id("create_partner", "do", n) for n in (1, 2, 3)]}
    assert s.state.reason == "no reply to CreatePartner after 3 attempts"
    assert k.deadline_key(s.state) == ("create_partner", "compensation", "reply", 1)
    # Late, the partner's creation is covered by that undo: no second one.
    s.feed(k.partner_created("ev-late-partner"), expect="ignored")
    d = s.feed(k.partner_reverted(partner_id=None))  # an undo of nothing answers success
    assert (s.status, k.types(d.commands)) == ("compensated", ("SagaCompensated",))
    s.feed(k.partner_created("ev-later-partner"), expect="ignored")
    assert len(all_commands(s, "RevertPartner")) == 1


def test_reply_to_an_earlier_attempt_still_counts() -> None:
    s = k.in_partner_creation()
    s.fire()
    d = s.feed(k.partner_created())
    assert (s.status, k.types(d.commands)) == (ACIP, ("CreateAlliance",))


def test_alliance_step_timeouts_retry_then_compensate_the_alliance_first() -> None:
    s = k.in_alliance_creation()
    assert [k.types(s.time_out().commands) for _ in range(2)] == [("CreateAlliance",)] * 2
    d = s.time_out()
    # The alliance may exist (only its replies were lost): it is undone before the partner,
    # by partner id and every CreateAlliance id.
    assert (s.status, k.types(d.commands)) == ("compensating", ("CancelAlliance",))
    assert s.state.reason == "no reply to CreateAlliance after 3 attempts"
    creates = [c.command_id for c in all_commands(s, "CreateAlliance")]
    assert creates == [cmd_id("create_alliance", "do", n) for n in (1, 2, 3)]
    assert d.commands[0].data == {"partner_id": k.PARTNER_ID, "alliance_id": None, "command_ids": creates}
    assert d.commands[0].command_id == cmd_id("create_alliance", "undo", 1)
    d = s.feed(k.alliance_cancelled(alliance_id=None))
    assert (s.status, k.types(d.commands)) == ("compensating", ("RevertPartner",))
    d = s.feed(k.partner_reverted())
    assert (s.status, k.types(d.commands)) == ("compensated", ("SagaCompensated",))


def test_an_abandoned_steps_undo_is_retried_with_the_same_data() -> None:
    s = k.in_alliance_creation()
    for _ in range(3):
        s.time_out()
    first = all_commands(s, "CancelAlliance")[0]
    assert s.fire().commands == ()  # no AllianceCancelled in time: a backoff, then
    d = s.fire()  # the undo's own policy sends it again
    assert k.types(d.commands) == ("CancelAlliance",)
    assert d.commands[0].data == first.data
    assert d.commands[0].command_id == cmd_id("create_alliance", "undo", 2)


# --- late replies ---------------------------------------------------------------------------
def _gave_up_by_timeout() -> k.Saga:
    s = k.in_alliance_creation()
    for _ in range(3):
        s.time_out()
    return s


def test_a_forward_retry_waits_out_a_growing_backoff() -> None:
    s = k.in_alliance_creation()
    policy = s.defn.step("create_alliance").do.policy
    for attempt in (1, 2):
        d = s.fire()  # no reply to attempt `attempt` in time
        assert (s.status, d.commands) == (ACIP, ())
        assert k.deadline_key(s.state) == ("create_alliance", "forward", "retry", attempt)
        assert s.state.deadline.due_at == s.now + policy.backoff(attempt)
        d = s.fire()  # backoff over: the next attempt leaves
        assert k.types(d.commands) == ("CreateAlliance",)
        assert d.commands[0].command_id == cmd_id("create_alliance", "do", attempt + 1)


def test_a_reply_during_the_forward_backoff_still_counts() -> None:
    s = k.in_alliance_creation()
    s.fire()
    d = s.feed(k.alliance_created())
    assert (s.status, k.types(d.commands)) == ("completed", ("SagaCompleted",))


@pytest.mark.parametrize("arrives", ["while_compensating", "after_compensated"])
def test_late_alliance_after_a_failure_is_cancelled_exactly_once(arrives: str) -> None:
    s = k.compensating_waiting_reply()
    if arrives == "after_compensated":
        s.feed(k.partner_reverted())
    status = s.status
    d = s.feed(k.alliance_created("ev-late-1"))
    assert k.types(d.commands) == ("CancelAlliance",)
    assert d.commands[0].data == {"partner_id": k.PARTNER_ID, "alliance_id": k.ALLIANCE_ID}
    assert (s.status, d.transitions) == (status, ())
    s.feed(k.alliance_created("ev-late-2"), expect="ignored")
    # A second alliance, made by a retried CreateAlliance: cancelled too, once.
    d = s.feed(k.alliance_created("ev-late-3", alliance_id="alliance-9"))
    assert d.commands[0].data == {"partner_id": k.PARTNER_ID, "alliance_id": "alliance-9"}
    s.feed(k.alliance_created("ev-late-4", alliance_id="alliance-9"), expect="ignored")
    if arrives == "while_compensating":
        s.feed(k.partner_reverted())
    assert s.status == "compensated"
    assert len(all_commands(s, "CancelAlliance")) == 2
    everything = [c.command_id for c in all_commands(s)]
    assert len(everything) == len(set(everything))


@pytest.mark.parametrize("arrives", ["while_undoing", "while_reverting", "after_compensated"])
def test_late_alliance_of_an_abandoned_step_gets_no_second_undo(arrives: str) -> None:
    s = _gave_up_by_timeout()  # CancelAlliance (maybe done) already sent
    if arrives != "while_undoing":
        s.feed(k.alliance_cancelled(alliance_id=None))
    if arrives == "after_compensated":
        s.feed(k.partner_reverted())
    status = s.status
    for n, alliance in enumerate((k.ALLIANCE_ID, "alliance-9")):
        d = s.feed(k.alliance_created(f"ev-late-{n}", alliance_id=alliance), expect="ignored")
        assert (s.status, d.commands) == (status, ())
        assert "covered by the undo" in d.reason
    assert len(all_commands(s, "CancelAlliance")) == 1


def test_late_failures_are_ignored() -> None:
    s = _gave_up_by_timeout()
    s.feed(k.alliance_creation_failed("ev-late-failure"), expect="ignored")
    s = k.failed()
    s.feed(k.partner_creation_failed("ev-late-failure"), expect="ignored")


@pytest.mark.parametrize(("driver", "make"), [
    (k.in_alliance_creation, k.alliance_created),
    (k.in_alliance_creation, k.alliance_creation_failed),
    (k.compensating_waiting_reply, k.partner_reverted),
    (k.compensating_waiting_reply, k.partner_revert_failed),
    (k.compensating_waiting_reply, k.alliance_created),
], ids=lambda x: getattr(x, "__name__", ""))
def test_reply_naming_another_partner_is_ignored(driver: Callable[[], k.Saga],
                                                 make: Callable[..., object]) -> None:
    s = driver()
    status = s.status
    d = s.feed(make("ev-other", partner_id=k.OTHER_PARTNER_ID), expect="ignored")
    assert (s.status, d.commands) == (status, ())
    assert k.OTHER_PARTNER_ID in d.reason


# --- operator actions -----------------------------------------------------------------------
def test_retry_requested_restarts_the_undo() -> None:
    s = k.compensation_failed()
    d = s.feed(k.retry_requested())
    assert (s.status, k.types(d.commands)) == ("compensating", ("RevertPartner",))
    assert (s.state.undo_attempt, s.state.reason) == (1, None)
    assert k.deadline_key(s.state) == ("create_partner", "compensation", "reply", 1)
    d = s.feed(k.partner_reverted())
    assert (s.status, k.types(d.commands)) == ("compensated", ("SagaCompensated",))


def test_retry_requested_sends_commands_participants_have_not_seen() -> None:
    s = k.compensation_failed()
    seen = {c.command_id for c in all_commands(s, "RevertPartner")}
    d = s.feed(k.retry_requested())
    assert d.commands[0].command_id not in seen


def test_late_revert_success_during_backoff_compensates() -> None:
    s = k.compensating_waiting_reply()
    s.fire()  # RevertPartner #1 got no reply in time; now waiting out the backoff
    d = s.feed(k.partner_reverted("ev-reverted-late"))
    assert (s.status, k.types(d.commands)) == ("compensated", ("SagaCompensated",))


def test_cancel_before_partner_exists_undoes_the_partner_it_may_have_made() -> None:
    s = k.in_partner_creation()
    d = s.feed(k.cancel_requested())
    assert (s.status, k.types(d.commands), s.state.reason) == (
        "compensating", ("RevertPartner",), "cancelled by operator")
    assert d.commands[0].data == {"partner_id": None,
                                  "command_ids": [cmd_id("create_partner", "do", 1)]}
    s.feed(k.partner_created("ev-late-partner"), expect="ignored")
    s.feed(k.partner_reverted(partner_id=None))
    assert s.status == "compensated"
    s.feed(k.partner_created("ev-late-partner-2"), expect="ignored")
    assert len(all_commands(s, "RevertPartner")) == 1


def test_cancel_during_alliance_step_compensates() -> None:
    s = k.in_alliance_creation()
    d = s.feed(k.cancel_requested())
    assert (s.status, k.types(d.commands)) == ("compensating", ("CancelAlliance",))
    s.feed(k.alliance_created("ev-late"), expect="ignored")
    assert k.types(s.feed(k.alliance_cancelled()).commands) == ("RevertPartner",)
    s.feed(k.partner_reverted())
    assert s.status == "compensated"
    assert len(all_commands(s, "CancelAlliance")) == 1


# --- idempotence, determinism, versions, history -------------------------------------------
FLOWS: dict[str, Callable[[], k.Saga]] = {
    "happy": k.completed, "partner_event": lambda: _partner_event_flow(),
    "compensated": k.compensated, "compensation_failed": k.compensation_failed,
    "timeouts": lambda: _then(_gave_up_by_timeout(), k.alliance_cancelled(alliance_id=None),
                              k.partner_reverted()),
    "operator_retry": lambda: _then(k.compensation_failed(), k.retry_requested(),
                                    k.partner_reverted()),
}


def _then(s: k.Saga, *events: object) -> k.Saga:
    for ev in events:
        s.feed(ev)
    return s


def _partner_event_flow() -> k.Saga:
    return _then(k.Saga(), k.partner_created(), k.alliance_created())


@pytest.mark.parametrize("flow", list(FLOWS))
def test_every_event_twice_changes_nothing(flow: str) -> None:
    once = FLOWS[flow]()
    state = None
    for (event, at), first in zip(once.log, once.decisions, strict=True):
        d = decide(state, event, at)  # type: ignore[arg-type]
        again = decide(d.state, event, at + 0.5)  # type: ignore[arg-type]
        assert again.outcome == "duplicate"
        assert again.state == d.state
        assert [c.command_id for c in again.commands] == [c.command_id for c in d.commands]
        assert d.commands == first.commands
        state = d.state
    assert state == once.state
    for (event, at), first in zip(once.log, once.decisions, strict=True):  # the whole flow again
        again = decide(state, event, at + 1000.0)  # type: ignore[arg-type]
        assert (again.outcome, again.state, again.commands) == ("duplicate", state, first.commands)


@pytest.mark.parametrize("flow", list(FLOWS))
def test_same_flow_same_ids(flow: str) -> None:
    a, b = FLOWS[flow](), FLOWS[flow]()
    assert all_commands(a) == all_commands(b)
    assert a.state == b.state
    assert ids.command_id("s", "create_partner", "do", 1) == ids.command_id(
        "s", "create_partner", "do", 1)
    assert len({ids.command_id("s", "create_partner", action, n)
                for action in ("do", "undo") for n in (1, 2)}) == 4


def test_ids_differ_between_sagas() -> None:
    other = StartSaga(event_id="ev-start", saga_id="saga-2", correlation_id="corr-2",
                      partner=k.PARTNER)
    mine = decide(None, k.start(), k.T0).commands
    theirs = decide(None, other, k.T0).commands
    assert not {c.command_id for c in mine} & {c.command_id for c in theirs}


def test_version_grows_by_one_per_applied_or_ignored_event() -> None:
    s = k.Saga()
    s.feed(k.start())
    s.feed(k.deadline("create_alliance", "forward", "reply", 1), expect="ignored")
    s.feed(k.partner_created())
    s.feed(k.partner_created(), expect="duplicate")
    s.feed(k.alliance_cancelled(), expect="ignored")
    s.feed(k.alliance_created())
    s.feed(k.alliance_created("ev-again"), expect="ignored")
    assert [d.state.version for d in s.decisions] == [1, 2, 3, 3, 4, 5, 6]
    assert s.state.ignored == 3
    assert [d.changed for d in s.decisions] == [True, True, True, False, True, True, True]


@pytest.mark.parametrize("flow", list(FLOWS))
def test_transitions_record_from_and_to(flow: str) -> None:
    s = FLOWS[flow]()
    previous = None
    for (event, at), d in zip(s.log, s.decisions, strict=True):
        for t in d.transitions:
            assert t.from_status == previous
            assert (t.event_id, t.event_type, t.at, t.version) == (
                event.event_id, event.type, at, d.state.version)  # type: ignore[attr-defined]
            previous = t.to_status
        if d.state is not None and d.outcome == "applied":
            assert previous == d.state.status
    assert previous == s.state.status


def test_a_second_partner_made_by_a_retried_create_partner_is_reverted_once() -> None:
    s = k.in_alliance_creation()  # the saga has PARTNER_ID
    status = s.status
    d = s.feed(k.partner_created("ev-second-partner", partner_id=k.OTHER_PARTNER_ID))
    assert k.types(d.commands) == ("RevertPartner",)
    assert d.commands[0].data == {"partner_id": k.OTHER_PARTNER_ID}
    assert s.status == status and s.state.partner_id == k.PARTNER_ID
    s.feed(k.partner_created("ev-second-partner-again", partner_id=k.OTHER_PARTNER_ID), expect="ignored")
    assert len(all_commands(s, "RevertPartner")) == 1
