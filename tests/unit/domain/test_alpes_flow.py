"""The Alpes flow (domain.definition.alpes_partner) on the same engine: create the partner,
wait for alianzas' contract, wait for compliance's decision; undo = delete the partner."""

from __future__ import annotations

import saga_kit as k

from domain import ALPES_PARTNER, PARTNER_CREATION
from domain.messages import (
    ContractApproved,
    ContractCreated,
    ContractRejected,
    PartnerCreated,
    PartnerCreationFailed,
    PartnerDeleted,
    PartnerDeleteFailed,
)
from domain.state import SagaState


def alpes() -> k.Saga:
    return k.Saga(defn=ALPES_PARTNER)


def contract(eid: str = "ev-contract") -> ContractCreated:
    return ContractCreated(event_id=eid, saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID, tipo="CPA",
                           monto=1000.0, moneda="COP")


def approved(eid: str = "ev-approved") -> ContractApproved:
    return ContractApproved(event_id=eid, saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID, contrato_id="c-1")


def rejected(eid: str = "ev-rejected") -> ContractRejected:
    return ContractRejected(event_id=eid, saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID,
                            reason="monto above 50000")


def deleted(eid: str = "ev-deleted") -> PartnerDeleted:
    return PartnerDeleted(event_id=eid, saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID)


def delete_failed(eid: str) -> PartnerDeleteFailed:
    return PartnerDeleteFailed(event_id=eid, saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID, reason="HTTP 500")


def history(s: k.Saga) -> list[str]:
    return [str(t.to_status) for d in s.decisions for t in d.transitions]


def test_an_http_started_saga_creates_the_partner_then_waits_for_contract_and_compliance() -> None:
    s = alpes()
    d = s.feed(k.start())
    assert k.types(d.commands) == ("SagaStarted", "CreatePartner")
    create = d.commands[1]
    assert create.destination == "integraciones"
    assert create.data == {"nombre": "Acme SA", "email": "ops@acme.example", "telefono": "+57 1 555 0100"}
    assert s.state is not None and s.state.flow == "alpes-partner"

    d = s.feed(k.partner_created())
    assert k.types(d.commands) == ()  # alianzas acts on PartnerCreado by itself: nothing to send
    assert s.status == "awaiting_contract"
    assert k.deadline_key(s.state) == ("await_contract", "forward", "reply", 1)

    s.feed(contract())
    assert s.status == "awaiting_compliance"
    d = s.feed(approved())
    assert k.types(d.commands) == ("SagaCompleted",)
    assert d.commands[0].data["flow"] == "alpes-partner"
    assert d.commands[0].data["captures"] == {"contrato_id": "c-1"}
    assert s.state.captures == {"contrato_id": "c-1"}
    assert history(s) == ["started", "partner_creation_in_progress", "partner_created", "awaiting_contract",
                          "contract_created", "awaiting_compliance", "contract_approved", "completed"]


def test_a_partner_created_by_itself_opens_a_saga_that_waits_for_its_contract() -> None:
    s = alpes()
    d = s.feed(k.partner_created(correlation_id=None))
    assert k.types(d.commands) == ("SagaStarted",)
    assert (s.status, s.state.origin, s.state.partner_id) == \
        ("awaiting_contract", "partner_event", k.PARTNER_ID)


def test_a_partner_created_without_the_partners_data_cannot_open_a_saga() -> None:
    s = alpes()
    bare = PartnerCreated(event_id="ev-bare", saga_id=k.SAGA_ID, partner_id=k.PARTNER_ID)
    d = s.feed(bare, expect="rejected")
    assert d.state is None and "partner's data" in (d.reason or "")


def test_an_approval_before_its_contract_completes_the_saga() -> None:
    """ContratoCreado and contrato-aprobado come on two topics: either may be routed first."""
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    d = s.feed(approved())
    assert k.types(d.commands) == ("SagaCompleted",)
    assert s.state.done_steps == ("create_partner", "await_contract", "await_compliance")
    d = s.feed(contract(), expect="ignored")
    assert "already done" in (d.reason or "")


def test_a_rejected_contract_deletes_the_partner_and_compensates() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    s.feed(contract())
    d = s.feed(rejected())
    assert k.types(d.commands) == ("DeletePartner",)
    assert d.commands[0].data == {"partner_id": k.PARTNER_ID, "email": "ops@acme.example"}
    assert "monto above 50000" in (s.state.reason or "")
    d = s.feed(deleted())
    assert k.types(d.commands) == ("SagaCompensated",)
    assert s.status == "compensated"


def test_a_rejection_before_its_contract_compensates_too() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    d = s.feed(rejected())
    assert k.types(d.commands) == ("DeletePartner",)


def test_no_contract_in_time_deletes_the_partner() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    d = s.fire()  # one attempt: a wait has nothing to re-send
    assert k.types(d.commands) == ("DeletePartner",)
    assert s.state.reason == "no ContractCreated within 60s"


def test_a_delete_failing_every_time_ends_in_compensation_failed() -> None:
    s = alpes()
    s.feed(k.start())
    s.feed(k.partner_created())
    s.feed(rejected())
    for attempt in range(1, 5):
        s.feed(delete_failed(f"ev-delete-failed-{attempt}"))
        d = s.fire()  # the backoff before the next try
        assert k.types(d.commands) == ("DeletePartner",)
    d = s.feed(delete_failed("ev-delete-failed-5"))
    assert (s.status, k.types(d.commands)) == ("compensation_failed", ("SagaFailed",))
    assert d.commands[0].data["needs_attention"] is True


def test_a_failed_creation_fails_the_saga_with_nothing_to_undo() -> None:
    s = alpes()
    s.feed(k.start())
    d = s.feed(PartnerCreationFailed(event_id="ev-f", saga_id=k.SAGA_ID, reason="EMAIL_EXISTENTE"))
    assert (s.status, k.types(d.commands)) == ("failed", ("SagaFailed",))


def test_a_saga_keeps_its_own_flow_through_json() -> None:
    s = alpes()
    s.feed(k.start())
    assert SagaState.model_validate_json(s.state.model_dump_json()).flow == "alpes-partner"


def test_alpes_events_are_ignored_by_a_partner_creation_saga() -> None:
    s = k.Saga(defn=PARTNER_CREATION)
    s.feed(k.start())
    d = s.feed(contract(), expect="ignored")
    assert "answers no step" in (d.reason or "")
    assert ALPES_PARTNER.statuses[:3] == ("started", "partner_creation_in_progress", "partner_created")
