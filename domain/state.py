"""A saga's state: what it did, what it waits for, and what it already answered."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from domain.messages import Command, PartnerData
from domain.privacy import ERASED

__all__ = ["NEEDS_OPERATOR", "TERMINAL", "Applied", "Deadline", "ErasedPartner", "SagaState", "SagaStatus",
           "Transition"]


class SagaStatus(StrEnum):
    """Every flow's common statuses, and the partner-creation flow's own. A flow declares its
    steps' statuses in its definition (domain.definition); a saga's `status` is a string."""

    STARTED = "started"
    PARTNER_CREATION_IN_PROGRESS = "partner_creation_in_progress"
    PARTNER_CREATED = "partner_created"
    ALLIANCE_CREATION_IN_PROGRESS = "alliance_creation_in_progress"
    ALLIANCE_CREATED = "alliance_created"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    # The undo itself failed after every retry: a person must look (see TROUBLESHOOTING.md).
    COMPENSATION_FAILED = "compensation_failed"


TERMINAL = frozenset(
    {
        SagaStatus.COMPLETED,
        SagaStatus.FAILED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATION_FAILED,
    }
)
#: Terminal for the saga's own rules, but waiting for a person (retry or give up): never
#: removed by retention (domain.lifecycle.retainable).
NEEDS_OPERATOR = frozenset({SagaStatus.COMPENSATION_FAILED})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Deadline(_Frozen):
    """When the saga stops waiting: for a reply (`reply`) or before re-sending (`retry`)."""

    due_at: float
    step: str
    phase: Literal["forward", "compensation"]
    kind: Literal["reply", "retry"]
    attempt: int


class Applied(_Frozen):
    """An event already applied, with the commands it produced (re-sent on redelivery)."""

    event_id: str
    commands: tuple[Command, ...] = ()


class Transition(_Frozen):
    """One status change, for the saga's history."""

    version: int
    from_status: str | None
    to_status: str
    event_type: str
    event_id: str
    at: float


class ErasedPartner(_Frozen):
    """A partner's data after its erasure (ErasureRequested): the fields stay, their values
    do not. No PartnerData validates as one (an email is never ERASED), nor the reverse."""

    nombre: Literal["[erased]"] = ERASED
    email: Literal["[erased]"] = ERASED
    telefono: None = None
    direccion: None = None
    erased: Literal[True] = True


class SagaState(_Frozen):
    saga_id: str
    correlation_id: str
    origin: Literal["http", "partner_event"]
    status: str
    # The definition the saga runs (domain.definition.DEFINITIONS).
    flow: str = "partner-creation"
    # The version of that definition it started with, and runs under to its end (1 for the
    # sagas stored before definitions had versions).
    flow_version: int = 1
    # Which saga of its business key this is (domain.lifecycle): 1 for the first; a start
    # after the key's last saga ended and its dedupe horizon passed opens the next one,
    # under an id of its own (domain.ids.saga_id_generation).
    generation: int = 1
    version: int = 1
    partner: PartnerData | ErasedPartner
    partner_id: str | None = None
    alliance_id: str | None = None
    # Ids a definition's steps capture from their replies (Action.captures), by name.
    captures: dict[str, str] = {}
    # Forward progress: the step being run (or last run) and its attempt number.
    step: str | None = None
    attempt: int = 0
    done_steps: tuple[str, ...] = ()
    # Steps the saga gave up on without knowing their outcome (every attempt timed out, or an
    # operator cancelled while one ran): "maybe done", so they are in `done_steps` too and
    # are undone like the others, with an undo naming every attempt's command id.
    maybe_done: tuple[str, ...] = ()
    # Compensation progress: the step being undone and its attempt number.
    undoing: str | None = None
    undo_attempt: int = 0
    # Operator retries of a failed compensation: each round sends commands with new ids.
    undo_round: int = 0
    # Steps undone by the compensation (their late or repeated successes are not undone again).
    undone_steps: tuple[str, ...] = ()
    deadline: Deadline | None = None
    # Successes that arrived after the saga gave up on their step, or a second resource made
    # by a retried command ("step" or "step:resource id"): each undone exactly once. Capped
    # (LATE_UNDONE_MEMORY, oldest forgotten) so that no participant can grow a saga's state.
    late_undone: tuple[str, ...] = ()
    reason: str | None = None
    # What a saga that gave up leaves behind because its participant offers no undo
    # (Step.leaves_behind), one line per step: set when it reaches its end.
    left_behind: tuple[str, ...] = ()
    created_at: float
    updated_at: float
    # The last few events applied, with the commands each produced (re-sent on redelivery).
    applied: tuple[Applied, ...] = ()
    ignored: int = 0
    # The status changes of the last applied event only. The changelog holds every state,
    # so the snapshot mirror appends these to the saga's history in PostgreSQL
    # (saga_transitions); the state itself stays the same size however long the saga runs.
    transitions: tuple[Transition, ...] = ()
    # When the partner's personal data was erased on request (ErasureRequested), if it was.
    erased_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
