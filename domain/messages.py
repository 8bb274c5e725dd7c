"""What flows into a saga (events) and out of it (commands and lifecycle notices).

These are the domain's own words; the wire format (CloudEvents on Pulsar, JSON on Kafka)
lives in `wire/`, which maps these models to and from bytes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ALL_EVENT_TYPES",
    "PARTICIPANT_EVENT_TYPES",
    "AllianceCancelled",
    "AllianceCreated",
    "AllianceCreationFailed",
    "CancelRequested",
    "Command",
    "ContractApproved",
    "ContractCreated",
    "ContractRejected",
    "DeadlineReached",
    "Destination",
    "ErasureRequested",
    "ParticipantEvent",
    "PartnerCreated",
    "PartnerCreationFailed",
    "PartnerData",
    "PartnerDeleteFailed",
    "PartnerDeleted",
    "PartnerRevertFailed",
    "PartnerReverted",
    "RetryRequested",
    "SagaEvent",
    "StartSaga",
]

# No control characters (NUL included): they cannot be stored or shown safely.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
NonEmpty = Annotated[str, Field(min_length=1, max_length=200, pattern=_PRINTABLE)]
Text = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class PartnerData(_Model):
    nombre: NonEmpty
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    telefono: Annotated[str, Field(max_length=50, pattern=_PRINTABLE)] | None = None
    direccion: Annotated[str, Field(max_length=500, pattern=_PRINTABLE)] | None = None


class _Event(_Model):
    """Every event has an id (deduplication) and the saga it belongs to, once routed."""

    event_id: NonEmpty
    saga_id: NonEmpty
    correlation_id: str | None = None


# --- from gestion-de-integraciones (partner-events)
class PartnerCreated(_Event):
    """`partner` may be missing where the participant's event names only the partner (the
    Alpes PartnerCreado); such an event cannot open a saga by itself."""

    type: Literal["PartnerCreated"] = "PartnerCreated"
    partner_id: NonEmpty
    partner: PartnerData | None = None


class PartnerCreationFailed(_Event):
    type: Literal["PartnerCreationFailed"] = "PartnerCreationFailed"
    reason: Text = ""


class PartnerReverted(_Event):
    """Also the answer to an undo of nothing: a RevertPartner for a partner that none of its
    command ids created has no partner id to name."""

    type: Literal["PartnerReverted"] = "PartnerReverted"
    partner_id: NonEmpty | None = None


class PartnerRevertFailed(_Event):
    type: Literal["PartnerRevertFailed"] = "PartnerRevertFailed"
    partner_id: NonEmpty | None = None
    reason: Text = ""


# --- from gestion-de-alianzas (alliance-events)
class AllianceCreated(_Event):
    type: Literal["AllianceCreated"] = "AllianceCreated"
    partner_id: NonEmpty
    alliance_id: NonEmpty


class AllianceCreationFailed(_Event):
    type: Literal["AllianceCreationFailed"] = "AllianceCreationFailed"
    partner_id: NonEmpty
    reason: Text = ""


class AllianceCancelled(_Event):
    """Also the answer to an undo of nothing (no alliance id to name)."""

    type: Literal["AllianceCancelled"] = "AllianceCancelled"
    partner_id: NonEmpty
    alliance_id: NonEmpty | None = None


# --- the Alpes services (wire/alpes.py): integraciones' soft delete, alianzas' contract,
# compliance's decision on it
class PartnerDeleted(_Event):
    """The partner is gone (deleted now, already deleted, or unknown): an undo of nothing too."""

    type: Literal["PartnerDeleted"] = "PartnerDeleted"
    partner_id: NonEmpty | None = None


class PartnerDeleteFailed(_Event):
    type: Literal["PartnerDeleteFailed"] = "PartnerDeleteFailed"
    partner_id: NonEmpty | None = None
    reason: Text = ""


class ContractCreated(_Event):
    type: Literal["ContractCreated"] = "ContractCreated"
    partner_id: NonEmpty
    contrato_id: NonEmpty | None = None
    tipo: Annotated[str, Field(max_length=50)] | None = None
    monto: float | None = None
    moneda: Annotated[str, Field(max_length=10)] | None = None


class ContractApproved(_Event):
    type: Literal["ContractApproved"] = "ContractApproved"
    partner_id: NonEmpty
    contrato_id: NonEmpty | None = None


class ContractRejected(_Event):
    type: Literal["ContractRejected"] = "ContractRejected"
    partner_id: NonEmpty
    contrato_id: NonEmpty | None = None
    reason: Text = ""


# --- from the orchestrator itself
class StartSaga(_Event):
    """A client asked over HTTP for a partner to be created."""

    type: Literal["StartSaga"] = "StartSaga"
    correlation_id: NonEmpty
    partner: PartnerData


class DeadlineReached(_Event):
    """The deadline index found that a saga's wait (for a reply, or before a retry) ran out."""

    type: Literal["DeadlineReached"] = "DeadlineReached"
    step: NonEmpty
    phase: Literal["forward", "compensation"]
    kind: Literal["reply", "retry"]
    attempt: int
    # The deadline's due time: with it, a deadline of an earlier round (an operator retry
    # starts the undo's attempts again at 1) cannot pass for the current one. None: an event
    # written by an earlier version, judged by step, phase, kind and attempt alone.
    due_at: float | None = None


class RetryRequested(_Event):
    """An operator asked a saga that needs attention to try its compensation again."""

    type: Literal["RetryRequested"] = "RetryRequested"


class CancelRequested(_Event):
    """An operator asked a live saga to stop and undo what it did."""

    type: Literal["CancelRequested"] = "CancelRequested"
    reason: Text = "cancelled by operator"


class ErasureRequested(_Event):
    """An operator asked for the partner's personal data to be erased from a finished saga
    (the right to erasure): the saga keeps its ids, statuses and history, not the data."""

    type: Literal["ErasureRequested"] = "ErasureRequested"


ParticipantEvent = (
    PartnerCreated
    | PartnerCreationFailed
    | PartnerReverted
    | PartnerRevertFailed
    | AllianceCreated
    | AllianceCreationFailed
    | AllianceCancelled
    | PartnerDeleted
    | PartnerDeleteFailed
    | ContractCreated
    | ContractApproved
    | ContractRejected
)
SagaEvent = Annotated[
    PartnerCreated
    | PartnerCreationFailed
    | PartnerReverted
    | PartnerRevertFailed
    | AllianceCreated
    | AllianceCreationFailed
    | AllianceCancelled
    | PartnerDeleted
    | PartnerDeleteFailed
    | ContractCreated
    | ContractApproved
    | ContractRejected
    | StartSaga
    | DeadlineReached
    | RetryRequested
    | CancelRequested
    | ErasureRequested,
    Field(discriminator="type"),
]

PARTICIPANT_EVENT_TYPES: dict[str, type[_Event]] = {
    m.model_fields["type"].default: m
    for m in (
        PartnerCreated,
        PartnerCreationFailed,
        PartnerReverted,
        PartnerRevertFailed,
        AllianceCreated,
        AllianceCreationFailed,
        AllianceCancelled,
        PartnerDeleted,
        PartnerDeleteFailed,
        ContractCreated,
        ContractApproved,
        ContractRejected,
    )
}
ALL_EVENT_TYPES: dict[str, type[_Event]] = {
    **PARTICIPANT_EVENT_TYPES,
    **{
        m.model_fields["type"].default: m
        for m in (StartSaga, DeadlineReached, RetryRequested, CancelRequested, ErasureRequested)
    },
}


class Destination(StrEnum):
    """Where a command goes; the bridges map each to a transport (a Pulsar topic, HTTP)."""

    INTEGRACIONES = "integraciones"
    ALIANZAS = "alianzas"
    COMPLIANCE = "compliance"
    LIFECYCLE = "lifecycle"


class Command(_Model):
    """Something the saga sends: a command to a participant or a lifecycle notice.

    `command_id` is deterministic (see domain.ids), so a re-send is recognisable.
    """

    command_id: str
    saga_id: str
    correlation_id: str
    destination: Destination
    type: str
    data: dict[str, Any]
    # Which try of its step this is (1 for lifecycle notices): an adapter that cannot tell
    # whether an earlier try happened (a create answered "already exists") needs it.
    attempt: int = 1
    # Sent again for an event applied before (a redelivery): the first sending may have been
    # carried out, so an adapter treats "already exists" as maybe its own doing.
    repeat: bool = False
