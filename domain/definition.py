"""The sagas, declared step by step: one engine (domain.transition) runs any definition.

Each step names the command that does it (or none: a step that only waits for a
participant to act by itself), the replies that say it happened or did not, the ids to
capture from its success, the command that undoes it, and its retry policy. On a business
failure (a *Failed reply) the steps already done are undone in reverse order; a step whose
reply does not come within `reply_timeout_s` is re-sent after a backoff, up to
`max_attempts`, then treated as failed (a step that only waits has one attempt).
An undo that fails is retried with backoff, and if it still fails the saga ends in
`compensation_failed`: a person must look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from domain.messages import Destination
from domain.state import SagaState, SagaStatus

__all__ = ["ALPES_PARTNER", "PARTNER_CREATION", "Action", "Definitions", "RetryPolicy", "SagaDefinition",
           "Step", "UnknownDefinition", "alpes_partner", "definitions", "partner_creation"]


@dataclass(frozen=True)
class RetryPolicy:
    reply_timeout_s: float = 30.0
    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Wait before attempt `attempt + 1`: doubles each time, capped."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1)))


def _nothing(s: SagaState) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Action:
    """`command` None: nothing is sent, the saga waits (within the policy's reply timeout)
    for a participant that acts by itself. `captures`: fields of the success event the
    saga keeps (in `SagaState.captures`, by name)."""

    command: str | None
    destination: str
    succeeded: str
    failed: str | None
    data: Callable[[SagaState], dict[str, Any]] = _nothing
    policy: RetryPolicy = RetryPolicy()
    captures: tuple[str, ...] = ()
    # The participant publishes its success event by itself as well, after answering the
    # call that did the step (integraciones' PartnerCreado after its 201): a second success
    # naming the same resource is expected, recorded and counted, not a problem to look at.
    echoes: bool = False

    @property
    def waits(self) -> bool:
        return self.command is None


@dataclass(frozen=True)
class Step:
    """`undo` None: nothing the saga can send undoes this step. Either there is nothing to
    undo (a decision, a wait), or the participant offers no undo: then `leaves_behind` says
    what stays when the saga compensates after this step, and a compensated saga lists it
    (`SagaState.left_behind`), so nobody believes the resource is gone."""

    name: str
    in_progress: str
    done: str
    do: Action
    undo: Action | None
    leaves_behind: str | None = None


@dataclass(frozen=True)
class SagaDefinition:
    """A flow (`name`) at one `version`. A saga records both when it starts
    (`SagaState.flow`, `SagaState.flow_version`) and runs under that version to its end; new
    sagas take the flow's newest version (`Definitions`)."""

    name: str
    steps: tuple[Step, ...]
    version: int = 1

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status a saga of this definition can be in, in order."""
        own = [x for st in self.steps for x in (st.in_progress, st.done)]
        return (SagaStatus.STARTED, *own, SagaStatus.COMPLETED, SagaStatus.FAILED,
                SagaStatus.COMPENSATING, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def after(self, name: str) -> Step | None:
        names = [s.name for s in self.steps]
        i = names.index(name) + 1
        return self.steps[i] if i < len(self.steps) else None

    def by_reply(self, event_type: str) -> tuple[Step, str] | None:
        """The step an event type answers, and what it says: do_ok/do_failed/undo_ok/undo_failed."""
        for s in self.steps:
            if s.do.succeeded == event_type:
                return s, "do_ok"
            if s.do.failed == event_type:
                return s, "do_failed"
            if s.undo and s.undo.succeeded == event_type:
                return s, "undo_ok"
            if s.undo and s.undo.failed == event_type:
                return s, "undo_failed"
        return None


def _partner(s: SagaState) -> dict[str, Any]:
    return s.partner.model_dump(mode="json")


def partner_creation(policies: Mapping[str, RetryPolicy] | None = None) -> SagaDefinition:
    """The saga, with per-step policies overridden by name (`create_partner`, `revert_partner`, ...)."""
    p = dict(policies or {})
    return SagaDefinition(
        name="partner-creation",
        steps=(
            Step(
                name="create_partner",
                in_progress=SagaStatus.PARTNER_CREATION_IN_PROGRESS,
                done=SagaStatus.PARTNER_CREATED,
                do=Action("CreatePartner", Destination.INTEGRACIONES,
                          succeeded="PartnerCreated", failed="PartnerCreationFailed",
                          data=_partner, policy=p.get("create_partner", RetryPolicy())),
                undo=Action("RevertPartner", Destination.INTEGRACIONES,
                            succeeded="PartnerReverted", failed="PartnerRevertFailed",
                            data=lambda s: {"partner_id": s.partner_id},
                            policy=p.get("revert_partner", RetryPolicy(max_attempts=5))),
            ),
            Step(
                name="create_alliance",
                in_progress=SagaStatus.ALLIANCE_CREATION_IN_PROGRESS,
                done=SagaStatus.ALLIANCE_CREATED,
                do=Action("CreateAlliance", Destination.ALIANZAS,
                          succeeded="AllianceCreated", failed="AllianceCreationFailed",
                          data=lambda s: {"partner_id": s.partner_id, **_partner(s)},
                          policy=p.get("create_alliance", RetryPolicy())),
                undo=Action("CancelAlliance", Destination.ALIANZAS,
                            succeeded="AllianceCancelled", failed=None,
                            data=lambda s: {"partner_id": s.partner_id, "alliance_id": s.alliance_id},
                            policy=p.get("cancel_alliance", RetryPolicy())),
            ),
        ),
    )


PARTNER_CREATION = partner_creation()


def _alpes_partner(s: SagaState) -> dict[str, Any]:
    return {k: v for k, v in _partner(s).items() if v is not None}


def alpes_partner(policies: Mapping[str, RetryPolicy] | None = None) -> SagaDefinition:
    """The Alpes services' own flow (issue #12; README, "Participant profiles"):
    integraciones creates the partner (HTTP POST, or its Avro command); alianzas reacts to
    its PartnerCreado by itself and makes a contract; compliance approves or rejects it.
    A rejection, or a wait that runs out, deletes the partner (HTTP DELETE). Policies by
    step name: `create_partner`, `delete_partner`, `await_contract`, `await_compliance`."""
    p = dict(policies or {})
    return SagaDefinition(
        name="alpes-partner",
        steps=(
            Step(
                name="create_partner",
                in_progress=SagaStatus.PARTNER_CREATION_IN_PROGRESS,
                done=SagaStatus.PARTNER_CREATED,
                do=Action("CreatePartner", Destination.INTEGRACIONES,
                          succeeded="PartnerCreated", failed="PartnerCreationFailed",
                          data=_alpes_partner, policy=p.get("create_partner", RetryPolicy()),
                          echoes=True),
                undo=Action("DeletePartner", Destination.INTEGRACIONES,
                            succeeded="PartnerDeleted", failed="PartnerDeleteFailed",
                            # The email finds the partner when its id never came back.
                            data=lambda s: {"partner_id": s.partner_id, "email": s.partner.email},
                            policy=p.get("delete_partner", RetryPolicy(max_attempts=5))),
            ),
            Step(
                name="await_contract",
                in_progress="awaiting_contract",
                done="contract_created",
                do=Action(None, Destination.ALIANZAS, succeeded="ContractCreated", failed=None,
                          policy=p.get("await_contract", RetryPolicy(reply_timeout_s=60.0, max_attempts=1)),
                          captures=("contrato_id",)),
                # gestion-de-alianzas has no way to cancel a contract.
                undo=None,
                leaves_behind="the partner's contract at gestion-de-alianzas (it offers no cancel)",
            ),
            Step(
                name="await_compliance",
                in_progress="awaiting_compliance",
                done="contract_approved",
                do=Action(None, Destination.COMPLIANCE, succeeded="ContractApproved",
                          failed="ContractRejected", captures=("contrato_id",),
                          policy=p.get("await_compliance",
                                       RetryPolicy(reply_timeout_s=60.0, max_attempts=1))),
                undo=None,
            ),
        ),
    )


ALPES_PARTNER = alpes_partner()


def definitions(policies: Mapping[str, RetryPolicy] | None = None) -> dict[str, SagaDefinition]:
    """Every definition by name, with the same per-step policy overrides."""
    return {d.name: d for d in (partner_creation(policies), alpes_partner(policies))}


class UnknownDefinition(LookupError):
    """A saga runs a flow version this deployment does not have."""


class Definitions:
    """Every deployed version of every flow. A saga runs the version it started with (`of`);
    new sagas take the newest version of their flow (`newest`). A version may be removed only
    once no saga of it is left (docs/upgrades.md, "Saga definitions")."""

    def __init__(self, defs: Iterable[SagaDefinition]) -> None:
        self._defs: dict[tuple[str, int], SagaDefinition] = {}
        for d in defs:
            if (d.name, d.version) in self._defs:
                raise ValueError(f"flow {d.name} version {d.version} is declared twice")
            self._defs[(d.name, d.version)] = d

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(sorted(self._defs.values(), key=lambda d: (d.name, d.version)))

    def versions(self, flow: str) -> list[int]:
        return sorted(v for name, v in self._defs if name == flow)

    def newest(self, flow: str) -> SagaDefinition:
        versions = self.versions(flow)
        if not versions:
            raise UnknownDefinition(f"no flow {flow!r} is deployed (deployed: {self._names()})")
        return self._defs[(flow, versions[-1])]

    def get(self, flow: str, version: int) -> SagaDefinition:
        found = self._defs.get((flow, version))
        if found is None:
            raise UnknownDefinition(f"flow {flow} version {version} is not deployed (deployed: "
                                    f"{self._names()}); deploy a release that has it: its sagas "
                                    f"finish under the version they started with")
        return found

    def of(self, state: SagaState) -> SagaDefinition:
        """The definition a saga runs: the flow and version it started with."""
        return self.get(state.flow, state.flow_version)

    def _names(self) -> str:
        return ", ".join(f"{n} v{v}" for n, v in sorted(self._defs)) or "none"

