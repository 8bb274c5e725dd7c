"""The envelope of a saga event on the orchestrator's Kafka topics.

It carries the routed domain event and, for events that came from a participant, the
original bytes, so that an event rejected later (no saga to match) still reaches the
dead-letter topic as it was received.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from domain.messages import Command, SagaEvent

__all__ = ["ForgetSaga", "OutboxEntry", "PartnerRouted", "RoutingNote", "SagaEnvelope"]


class SagaEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: SagaEvent
    raw: str | None = None  # original message text, participant events only
    origin: str | None = None  # where it came from (Pulsar topic), for dead letters
    received_at: float | None = None  # when the bridge received it (latency metrics)
    # Sent to the partner's own saga (domain.ids.saga_id_for_partner) because the event named
    # only a partner: if that saga does not exist, the partner index decides instead.
    by_partner: bool = False
    # Passed on from a retained saga's tombstone (domain.lifecycle): an opening event opens
    # its business key's `generation`-th saga.
    generation: int | None = None


class OutboxEntry(BaseModel):
    """The commands one saga event led to, in the order the saga decided them: one record on
    `<app>-outbox`, keyed by saga id, in the saga's partition (agents/partner_saga.py writes
    it with the saga's new state; bridges/outbox.py sends it on)."""

    model_config = ConfigDict(frozen=True)

    commands: tuple[Command, ...]


class PartnerRouted(BaseModel):
    """A participant event keyed by partner id, on its way to the partner -> saga index."""

    model_config = ConfigDict(frozen=True)

    type: str
    event_id: str
    saga_id: str | None
    correlation_id: str | None
    partner_id: str
    fields: dict[str, Any]
    raw: str
    origin: str
    received_at: float
    # The saga the event was sent to first and that does not exist (see SagaEnvelope.by_partner).
    tried: str | None = None


class ForgetSaga(BaseModel):
    """Retention: each saga of `forget`, (saga id, version, partner id), may leave the live
    tables if it is still finished at that version (agents/retention.py). All of them are in
    the partition the message is sent to. On the saga topic beside SagaEnvelope; its JSON
    starts with `{"forget":`, which is how the saga agent tells the two apart."""

    model_config = ConfigDict(frozen=True)

    forget: tuple[tuple[str, int, str | None], ...]

    PREFIX: ClassVar[bytes] = b'{"forget":'


class RoutingNote(BaseModel):
    """The partner index's own messages for participants that name only a partner (the
    Alpes services, agents/partner_routing.py), on `<app>-partner-routing` beside
    PartnerRouted; its JSON starts with `{"note":`:
    - `claim-email` (key `email:<email>`): saga `saga_id` is creating a partner with this
      email; sent, and acknowledged by Kafka, before the create command leaves;
    - `looked-up` (key `email:<email>`): integraciones says partner `partner_id` has this
      email (and `partner`, its data): the index decides whose partner it is;
    - `claimed` (key: the partner id): partner `partner_id` belongs to saga `saga_id` (None:
      integraciones does not know the partner); its events parked meanwhile go there;
    - `forget-email` (key `email:<email>`): saga `saga_id` left the live tables (retention) or
      its personal data was erased.
    """

    model_config = ConfigDict(frozen=True)

    note: Literal["claim-email", "looked-up", "claimed", "forget-email"]
    email: str | None = None
    partner_id: str | None = None
    saga_id: str | None = None
    partner: dict[str, Any] | None = None
    at: float = 0.0

    PREFIX: ClassVar[bytes] = b'{"note":'
