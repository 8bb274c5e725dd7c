"""How a participant event naming a partner finds its saga."""

from __future__ import annotations

import pytest

from domain import ids
from wire.cloudevents import Inbound
from wire.internal import PartnerRouted
from wire.routing import Hop, first_hop, saga_for


def _msg(type_: str, *, saga_id: str | None = None, correlation_id: str | None = None) -> PartnerRouted:
    return PartnerRouted(type=type_, event_id="e", saga_id=saga_id, correlation_id=correlation_id,
                         partner_id="p-1", fields={}, raw="{}", origin="t", received_at=0.0)


@pytest.mark.parametrize(("type_", "saga_id", "corr", "known", "want"), [
    ("AllianceCreated", "s-named", None, "s-known", "s-named"),
    ("AllianceCreated", None, None, "s-known", "s-known"),
    ("AllianceCreated", None, None, None, None),
    # A reply naming a partner nobody indexed yet, but carrying an HTTP saga's correlation id.
    ("PartnerCreationFailed", None, "c-1", None, ids.saga_id_for_correlation("c-1")),
    ("PartnerRevertFailed", None, "c-1", "s-known", "s-known"),
    ("PartnerCreated", None, "c-1", None, ids.saga_id_for_correlation("c-1")),
    ("PartnerCreated", None, None, "s-known", "s-known"),
    ("PartnerCreated", None, None, None, ids.saga_id_for_partner("p-1")),
])
def test_saga_for(type_: str, saga_id: str | None, corr: str | None, known: str | None,
                  want: str | None) -> None:
    assert saga_for(_msg(type_, saga_id=saga_id, correlation_id=corr), known) == want


OWN = ids.saga_id_for_partner("p-1")


def test_a_reply_echoing_the_partner_sagas_own_id_as_correlation_finds_it_unindexed() -> None:
    # Sagas opened by a PartnerCreated have no partner-index entry: their id is derived.
    assert saga_for(_msg("AllianceCreated", correlation_id=OWN), None) == OWN
    assert saga_for(_msg("AllianceCreated", correlation_id=OWN), "s-known") == "s-known"


def _inbound(type_: str, *, saga_id: str | None = None, correlation_id: str | None = None,
             partner_id: str | None = "p-1") -> Inbound:
    return Inbound(type_, "e", saga_id, correlation_id, partner_id, {"partner_id": partner_id}, "{}")


@pytest.mark.parametrize(("inbound", "want"), [
    (_inbound("AllianceCreated", saga_id="s-1"), Hop("saga", "s-1")),
    # Naming only the partner, or echoing the partner's own saga id: that saga first.
    (_inbound("AllianceCreated"), Hop("saga", OWN, by_partner=True)),
    (_inbound("PartnerReverted", correlation_id=OWN), Hop("saga", OWN, by_partner=True)),
    # Another correlation id (an HTTP-started saga's): the partner index decides.
    (_inbound("AllianceCreated", correlation_id="c-1"), Hop("partner")),
    # PartnerCreated always passes the index, even naming a saga.
    (_inbound("PartnerCreated", saga_id="s-1"), Hop("partner")),
    (_inbound("PartnerCreated"), Hop("partner")),
    (_inbound("PartnerCreationFailed", correlation_id="c-1", partner_id=None),
     Hop("saga", ids.saga_id_for_correlation("c-1"))),
])
def test_first_hop(inbound: Inbound, want: Hop) -> None:
    assert first_hop(inbound) == want


def test_an_event_naming_nothing_to_route_by_is_dead() -> None:
    hop = first_hop(_inbound("PartnerCreationFailed", partner_id=None))
    assert hop.to == "dead" and "no saga to match" in hop.reason
