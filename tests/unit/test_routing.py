"""How a participant event naming a partner finds its saga."""

from __future__ import annotations

import pytest

from domain import ids
from wire.internal import PartnerRouted
from wire.routing import saga_for


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
