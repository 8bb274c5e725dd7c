"""Deterministic identifiers: the same inputs always give the same id.

Participants deduplicate commands by id, so a command re-sent after a crash or a
redelivery must carry the id it had the first time.
"""

from __future__ import annotations

import uuid

__all__ = [
    "command_id",
    "deadline_event_id",
    "lifecycle_id",
    "saga_id_for_correlation",
    "saga_id_for_partner",
    "saga_id_generation",
]

_NS = uuid.UUID("4f1e3c2a-5b6d-4e8f-9a0b-1c2d3e4f5a6b")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NS, ":".join(str(p) for p in parts)))


def command_id(saga_id: str, step: str, action: str, attempt: int) -> str:
    """One id per (saga, step, do/undo, attempt number)."""
    return _id("cmd", saga_id, step, action, attempt)


def lifecycle_id(saga_id: str, kind: str) -> str:
    return _id("lifecycle", saga_id, kind)


def saga_id_for_correlation(correlation_id: str) -> str:
    """An HTTP-started saga's id: a retried POST with the same correlation_id finds the same saga."""
    return _id("saga", "correlation", correlation_id)


def saga_id_for_partner(partner_id: str) -> str:
    """The saga opened by a PartnerCreated that no saga asked for."""
    return _id("saga", "partner", partner_id)


def deadline_event_id(saga_id: str, step: str, phase: str, kind: str, attempt: int,
                      due_at: float) -> str:
    """A fired deadline's event id: the same deadline fired twice (after a rebalance) is one event."""
    return _id("deadline", saga_id, step, phase, kind, attempt, round(due_at * 1000))


def saga_id_generation(first_saga_id: str, generation: int) -> str:
    """The id of the `generation`-th saga of a business key whose first saga is
    `first_saga_id` (domain.lifecycle): the first keeps its own id, later ones get new ids, so
    no saga id is ever reused, and their command ids differ too."""
    if generation <= 1:
        return first_saga_id
    return _id("saga", "generation", first_saga_id, generation)
