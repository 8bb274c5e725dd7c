"""Participant events as tests publish them, and waiting for sagas to end."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from simulators.participants import Participants
from tests.support.pulsar import Tap
from wire.cloudevents import encode_event

__all__ = ["TERMINAL_EVENTS", "by_type", "ended", "outcome_counts", "partner_created", "publish_partners"]

TERMINAL_EVENTS = ("SagaCompleted", "SagaCompensated", "SagaFailed")


def partner_created(partner_id: str, n: int = 0, *, event_id: str | None = None,
                    correlation_id: str | None = None) -> bytes:
    return encode_event("PartnerCreated", event_id or str(uuid.uuid4()),
                        {"partner_id": partner_id, "nombre": f"Partner {n}", "email": f"p{n}@example.com",
                         "telefono": "+57 1 234 5678", "direccion": f"Calle {n}"},
                        source="/gestion-de-integraciones", correlation_id=correlation_id)


async def publish_partners(sims: Participants, count: int, *, twice: bool = False) -> list[str]:
    """Publish `count` PartnerCreated events (as integraciones does); return the partner ids.
    With `twice`, the whole batch is published again afterwards, byte for byte (same event
    ids), as a redelivery would."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    payloads = [partner_created(pid, n) for n, pid in enumerate(ids)]
    for _ in range(2 if twice else 1):
        for pid, payload in zip(ids, payloads, strict=True):
            await sims.publish(sims.partner_events, payload, pid)
    return ids


def ended(lifecycle: Tap) -> dict[str, list[str]]:
    """saga id -> the distinct terminal lifecycle notices seen for it (one, when all is well).

    A notice re-sent after a redelivery keeps its CloudEvents id, so it counts once, as it
    does for any consumer that deduplicates by id."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for ev in lifecycle.events():
        if ev["type"] in TERMINAL_EVENTS and ev["id"] not in seen:
            seen.add(ev["id"])
            out.setdefault(ev["sagaid"], []).append(ev["type"])
    return out


def outcome_counts(lifecycle: Tap) -> Counter[str]:
    return Counter(types[-1] for types in ended(lifecycle).values())


def by_type(tap: Tap) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in tap.events():
        out.setdefault(ev["type"], []).append(ev)
    return out
