"""Which saga a participant event that names a partner belongs to (pure; used by
agents/partner_routing.py with the partner -> saga index)."""

from __future__ import annotations

from domain import ids
from wire.internal import PartnerRouted

__all__ = ["saga_for"]


def saga_for(msg: PartnerRouted, known: str | None) -> str | None:
    """The saga an event belongs to: the one it names (sagaid, or the correlationid of an
    HTTP-started saga), else the partner's; a PartnerCreated naming none opens a new one."""
    if msg.saga_id:
        return msg.saga_id
    by_correlation = ids.saga_id_for_correlation(msg.correlation_id) if msg.correlation_id else None
    if msg.type == "PartnerCreated":
        return by_correlation or known or ids.saga_id_for_partner(msg.partner_id)
    return known or by_correlation
