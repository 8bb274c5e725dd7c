"""Which saga a participant event that names a partner belongs to (pure; used by
agents/partner_routing.py with the partner -> saga index)."""

from __future__ import annotations

from typing import Literal, NamedTuple

from domain import ids
from wire.cloudevents import Inbound
from wire.internal import PartnerRouted


class Hop(NamedTuple):
    """Where the Pulsar bridge writes a decoded event: to a saga's stream (`saga`, keyed by
    `saga_id`; `by_partner`: a guess the saga agent hands on to the partner index if that
    saga does not exist), to the partner index (`partner`), or nowhere (`dead`, `reason`)."""

    to: Literal["saga", "partner", "dead"]
    saga_id: str | None = None
    by_partner: bool = False
    reason: str = ""


def first_hop(inbound: Inbound) -> Hop:
    # Replies that name their saga go straight to it, except PartnerCreated, which must pass
    # the partner index (it opens a saga, or registers its partner with an HTTP-started one).
    if inbound.saga_id and inbound.type != "PartnerCreated":
        return Hop("saga", inbound.saga_id)
    if inbound.partner_id and inbound.type != "PartnerCreated":
        own = ids.saga_id_for_partner(inbound.partner_id)
        if inbound.correlation_id in (None, own):
            # Most sagas are the partner's own (opened by its PartnerCreated; its correlation
            # id is its saga id), whose id the partner id gives: try it first, without the
            # partner index's Kafka hop.
            return Hop("saga", own, by_partner=True)
    if inbound.partner_id:
        return Hop("partner")
    if inbound.correlation_id:
        return Hop("saga", ids.saga_id_for_correlation(inbound.correlation_id))
    return Hop("dead", reason=f"no saga to match: {inbound.type} has no sagaid, correlationid or partner_id")

__all__ = ["Hop", "first_hop", "saga_for"]


def saga_for(msg: PartnerRouted, known: str | None) -> str | None:
    """The saga an event belongs to: the one it names (sagaid, or the correlationid of an
    HTTP-started saga), else the partner's; a PartnerCreated naming none opens a new one."""
    if msg.saga_id:
        return msg.saga_id
    by_correlation = ids.saga_id_for_correlation(msg.correlation_id) if msg.correlation_id else None
    if msg.type == "PartnerCreated":
        return by_correlation or known or ids.saga_id_for_partner(msg.partner_id)
    own = ids.saga_id_for_partner(msg.partner_id)
    if msg.correlation_id == own:  # the partner's own saga: its correlation id is its id
        return known or own
    return known or by_correlation


def email_key(email: str) -> str:
    """The partner index's key for an email claim (emails compare case-insensitively)."""
    return "email:" + email.strip().lower()
