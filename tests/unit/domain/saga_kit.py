"""Shared builders for the domain unit tests: events, a small driver, and a way into each status.

Not a test module (pytest collects only `test_*.py`); the test files import it by name, which
works because pytest puts this folder on sys.path (this folder has no `__init__.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from domain import PARTNER_CREATION, Command, Decision, PartnerData, SagaDefinition, SagaState
from domain.messages import (
    AllianceCancelled,
    AllianceCreated,
    AllianceCreationFailed,
    CancelRequested,
    DeadlineReached,
    PartnerCreated,
    PartnerCreationFailed,
    PartnerReverted,
    PartnerRevertFailed,
    RetryRequested,
    StartSaga,
)
from domain.transition import decide

SAGA_ID = "saga-1"
CORRELATION_ID = "corr-1"
PARTNER_ID = "partner-1"
OTHER_PARTNER_ID = "partner-2"
ALLIANCE_ID = "alliance-1"
PARTNER = PartnerData(nombre="Acme SA", email="ops@acme.example", telefono="+57 1 555 0100")
T0 = 1_000.0


# --- events -------------------------------------------------------------------------------
def start(eid: str = "ev-start") -> StartSaga:
    return StartSaga(event_id=eid, saga_id=SAGA_ID, correlation_id=CORRELATION_ID,
                     partner=PARTNER)


def partner_created(eid: str = "ev-partner-created", partner_id: str = PARTNER_ID,
                    correlation_id: str | None = CORRELATION_ID) -> PartnerCreated:
    return PartnerCreated(event_id=eid, saga_id=SAGA_ID, correlation_id=correlation_id,
                          partner_id=partner_id, partner=PARTNER)


def partner_creation_failed(eid: str = "ev-partner-failed") -> PartnerCreationFailed:
    return PartnerCreationFailed(event_id=eid, saga_id=SAGA_ID, reason="email taken")


def partner_reverted(eid: str = "ev-partner-reverted",
                     partner_id: str | None = PARTNER_ID) -> PartnerReverted:
    return PartnerReverted(event_id=eid, saga_id=SAGA_ID, partner_id=partner_id)


def partner_revert_failed(eid: str = "ev-revert-failed",
                          partner_id: str = PARTNER_ID) -> PartnerRevertFailed:
    return PartnerRevertFailed(event_id=eid, saga_id=SAGA_ID, partner_id=partner_id,
                               reason="database unavailable")


def alliance_created(eid: str = "ev-alliance-created", partner_id: str = PARTNER_ID,
                     alliance_id: str = ALLIANCE_ID) -> AllianceCreated:
    return AllianceCreated(event_id=eid, saga_id=SAGA_ID, partner_id=partner_id,
                           alliance_id=alliance_id)


def alliance_creation_failed(eid: str = "ev-alliance-failed",
                             partner_id: str = PARTNER_ID) -> AllianceCreationFailed:
    return AllianceCreationFailed(event_id=eid, saga_id=SAGA_ID, partner_id=partner_id,
                                  reason="quota exceeded")


def alliance_cancelled(eid: str = "ev-alliance-cancelled",
                       alliance_id: str | None = ALLIANCE_ID) -> AllianceCancelled:
    return AllianceCancelled(event_id=eid, saga_id=SAGA_ID, partner_id=PARTNER_ID,
                             alliance_id=alliance_id)


def retry_requested(eid: str = "ev-retry") -> RetryRequested:
    return RetryRequested(event_id=eid, saga_id=SAGA_ID)


def cancel_requested(eid: str = "ev-cancel") -> CancelRequested:
    return CancelRequested(event_id=eid, saga_id=SAGA_ID)


def deadline(step: str, phase: Literal["forward", "compensation"],
             kind: Literal["reply", "retry"], attempt: int,
             eid: str | None = None) -> DeadlineReached:
    eid = eid or f"ev-deadline-{step}-{phase}-{kind}-{attempt}"
    return DeadlineReached(event_id=eid, saga_id=SAGA_ID, step=step, phase=phase, kind=kind,
                           attempt=attempt)


def types(commands: Iterable[Command]) -> tuple[str, ...]:
    return tuple(c.type for c in commands)


def deadline_key(state: SagaState) -> tuple[str, str, str, int] | None:
    d = state.deadline
    return None if d is None else (d.step, d.phase, d.kind, d.attempt)


# --- driver -------------------------------------------------------------------------------
@dataclass
class Saga:
    """Feeds events one at a time (1 s apart unless `at` is given) and keeps every decision."""

    defn: SagaDefinition = PARTNER_CREATION
    state: SagaState | None = None
    now: float = T0 - 1.0
    decisions: list[Decision] = field(default_factory=list)
    log: list[tuple[object, float]] = field(default_factory=list)

    def feed(self, event: object, *, at: float | None = None, expect: str = "applied") -> Decision:
        self.now = self.now + 1.0 if at is None else at
        d = decide(self.state, event, self.now, self.defn)  # type: ignore[arg-type]
        assert d.outcome == expect, f"{type(event).__name__}: {d.outcome} ({d.reason})"
        if d.state is not None:
            self.state = d.state
        self.decisions.append(d)
        self.log.append((event, self.now))
        return d

    def fire(self, *, expect: str = "applied", eid: str | None = None) -> Decision:
        """The saga's current deadline runs out: deliver it at its due time."""
        assert self.state is not None and self.state.deadline is not None
        d = self.state.deadline
        ev = deadline(d.step, d.phase, d.kind, d.attempt,
                      eid or f"ev-deadline-{d.step}-{d.phase}-{d.kind}-{d.attempt}-{d.due_at}")
        return self.feed(ev, at=d.due_at, expect=expect)

    def time_out(self) -> Decision:
        """A forward step's reply does not come: its reply deadline runs out and, unless that
        was the last attempt, the backoff after it too. Returns the last decision."""
        d = self.fire()
        deadline = self.state.deadline if self.state is not None else None
        if deadline is not None and deadline.phase == "forward" and deadline.kind == "retry":
            d = self.fire()
        return d

    @property
    def status(self) -> str:
        assert self.state is not None
        return str(self.state.status)


# --- a saga in each status that can persist -----------------------------------------------
def in_partner_creation() -> Saga:
    s = Saga()
    s.feed(start())
    return s


def in_alliance_creation() -> Saga:
    s = in_partner_creation()
    s.feed(partner_created())
    return s


def compensating_waiting_reply() -> Saga:
    s = in_alliance_creation()
    s.feed(alliance_creation_failed())
    return s


def compensating_waiting_retry() -> Saga:
    s = compensating_waiting_reply()
    s.feed(partner_revert_failed("ev-revert-failed-1"))
    return s


def completed() -> Saga:
    s = in_alliance_creation()
    s.feed(alliance_created())
    return s


def failed() -> Saga:
    s = in_partner_creation()
    s.feed(partner_creation_failed())
    return s


def compensated() -> Saga:
    s = compensating_waiting_reply()
    s.feed(partner_reverted())
    return s


def compensation_failed() -> Saga:
    s = compensating_waiting_reply()
    for attempt in range(1, 5):
        s.feed(partner_revert_failed(f"ev-revert-failed-{attempt}"))
        s.fire()
    s.feed(partner_revert_failed("ev-revert-failed-5"))
    return s


DRIVERS: dict[str, Callable[[], Saga]] = {
    "partner_creation_in_progress": in_partner_creation,
    "alliance_creation_in_progress": in_alliance_creation,
    "compensating_waiting_reply": compensating_waiting_reply,
    "compensating_waiting_retry": compensating_waiting_retry,
    "completed": completed,
    "failed": failed,
    "compensated": compensated,
    "compensation_failed": compensation_failed,
}
