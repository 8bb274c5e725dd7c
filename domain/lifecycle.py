"""A saga's life after its end: what retention may remove, what it keeps, and what a new
start for the same business key means.

The policy (README, "Saga ids, duplicates and retention"):
- A business key (an HTTP start's correlation_id, a partner-started saga's partner_id) gives
  its first saga's id (domain.ids), so a retried start finds the same saga.
- A finished saga leaves the live tables `retention` after its end, unless it needs a person
  (`NEEDS_OPERATOR`: compensation_failed is never removed by retention). Retention replaces
  its state with a `Tombstone`: ids, end status, generation, what it left behind; no
  personal data. The tombstone stays in the table (and in PostgreSQL).
- A start for a key whose saga ended less than `horizon` ago is a duplicate of that saga:
  answered with it (HTTP), or dead-lettered with the reason (an event). Nothing reopens it.
- A start after the horizon opens the key's next generation: a new saga with an id of its
  own (`ids.saga_id_generation`), its own history, snapshot row and retention. The ended
  saga's tombstone points to it (`current`), and events that reach the old id by the
  business key are passed on along that pointer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from domain import ids
from domain.messages import PartnerCreated, SagaEvent, StartSaga
from domain.state import NEEDS_OPERATOR, TERMINAL, SagaState, SagaStatus

__all__ = ["RETAINABLE", "Tombstone", "TombstoneVerdict", "bury", "business_key", "erasure_refusal",
           "on_tombstone", "opens_saga", "retainable"]

#: The end statuses retention may remove from the live tables.
RETAINABLE = frozenset(TERMINAL - NEEDS_OPERATOR)


def retainable(state: SagaState) -> bool:
    """May retention remove this saga from the live tables? Only an end nobody must act on."""
    return state.status in RETAINABLE


def erasure_refusal(status: str) -> str | None:
    """Why a saga in `status` may not have its personal data erased, or None: like retention,
    only an end nobody must act on (a live saga still sends the data; an undo waiting for a
    person may need it)."""
    if status in RETAINABLE:
        return None
    why = ("its compensation failed and waits for a person: retry it (the undo may need the data) "
           "or resolve it first" if status == SagaStatus.COMPENSATION_FAILED else "it is still running")
    return f"erasure applies to a saga that ended completed, failed or compensated; {why}"


def business_key(state: SagaState) -> str:
    """What a repeated start of this saga would carry: its correlation id (HTTP) or partner."""
    if state.origin == "partner_event" and state.partner_id:
        return state.partner_id
    return state.correlation_id


class Tombstone(BaseModel):
    """What the live tables keep of a retained saga, under its id. Compact, and free of
    personal data. Serialized first field first: a stored value starts `{"tombstone":true`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tombstone: Literal[True] = True
    saga_id: str
    # Higher than the saga's last state's version: the snapshot's version guard takes it.
    version: int
    status: str
    flow: str
    origin: Literal["http", "partner_event"]
    correlation_id: str
    partner_id: str | None = None
    alliance_id: str | None = None
    business_key: str
    generation: int = 1
    created_at: float
    ended_at: float
    retained_at: float
    reason: str | None = None
    # The key's next generation, once a start after the horizon opened it.
    current: str | None = None
    left_behind: tuple[str, ...] = ()

    PREFIX: ClassVar[bytes] = b'{"tombstone":true'

    @classmethod
    def is_one(cls, raw: bytes) -> bool:
        return raw.startswith(cls.PREFIX)


def bury(state: SagaState, now: float) -> Tombstone:
    if not retainable(state):
        raise ValueError(f"saga {state.saga_id} in {state.status} is not for retention")
    return Tombstone(saga_id=state.saga_id, version=state.version + 1, status=state.status, flow=state.flow,
                     origin=state.origin, correlation_id=state.correlation_id, partner_id=state.partner_id,
                     alliance_id=state.alliance_id, business_key=business_key(state),
                     generation=state.generation, created_at=state.created_at, ended_at=state.updated_at,
                     retained_at=now, reason=state.reason, left_behind=state.left_behind)


def opens_saga(event: SagaEvent) -> bool:
    """An event that would open a saga where none is: an HTTP start, or a PartnerCreated."""
    return isinstance(event, (StartSaga, PartnerCreated))


@dataclass(frozen=True)
class TombstoneVerdict:
    """What becomes of an event that reaches a retained saga's id.

    - `pass_on`: to the key's newer saga `saga_id` (the tombstone's `current`);
    - `open`: a start after the horizon: the key's next generation, `saga_id`, opened by the
      event (the tombstone is stored again as `tombstone`, pointing to it);
    - `duplicate`: a start within the horizon, or any other event: the saga ended; `reason`
      says so (dead-lettered, or, for an HTTP start, answered with the ended saga)."""

    kind: Literal["pass_on", "open", "duplicate"]
    reason: str
    saga_id: str | None = None
    generation: int | None = None
    tombstone: Tombstone | None = None


def on_tombstone(tomb: Tombstone, event: SagaEvent, now: float, horizon_s: float, *,
                 by_key: bool = False) -> TombstoneVerdict:
    """`by_key`: the event reached this id by its business key (a participant's event naming
    only the partner), not by naming this saga: it may belong to the key's newer saga. An
    event that names this saga (an operator's request, a deadline, a reply echoing its id)
    is never passed on to another one."""
    if tomb.current is not None and (by_key or opens_saga(event)):
        return TombstoneVerdict("pass_on", f"saga {tomb.saga_id} ended; its key's newer saga is "
                                           f"{tomb.current}", saga_id=tomb.current)
    ended = f"saga {tomb.saga_id} ended {tomb.status} and was retained"
    if not opens_saga(event):
        return TombstoneVerdict("duplicate", f"{event.type} for a finished saga: {ended}")
    if now < tomb.ended_at + horizon_s:
        return TombstoneVerdict(
            "duplicate", f"duplicate of a finished saga: {event.type} for {tomb.business_key}, whose {ended} "
                         f"(a new start is accepted {horizon_s:g}s after its end)")
    generation = tomb.generation + 1
    first = ids.saga_id_generation(tomb.saga_id, 1) if tomb.generation == 1 else _first_of(tomb)
    new_id = ids.saga_id_generation(first, generation)
    pointing = tomb.model_copy(update={"current": new_id, "version": tomb.version + 1})
    return TombstoneVerdict("open", f"{event.type} for {tomb.business_key} after its dedupe horizon: "
                                    f"generation {generation}",
                            saga_id=new_id, generation=generation, tombstone=pointing)


def _first_of(tomb: Tombstone) -> str:
    """The id of the key's first saga: what ids derive from the business key."""
    if tomb.origin == "http":
        return ids.saga_id_for_correlation(tomb.correlation_id)
    return ids.saga_id_for_partner(tomb.business_key)
