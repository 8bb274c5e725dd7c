"""The one function that masks a partner's personal data for a reader without `operate`."""

from __future__ import annotations

import copy

import pytest

from domain.privacy import PERSONAL_FIELDS, mask_email, masked

PARTNER = {"nombre": "Ana Pérez", "email": "ana.perez@example.com", "telefono": "+57 300 1234567",
           "direccion": "Calle 1 # 2-3"}


@pytest.mark.parametrize(("email", "shown"), [
    ("ana.perez@example.com", "a***@example.com"),
    ("a@b", "a***@b"),
    ("@nobody", "***"),
    ("not an email", "***"),
    ("a***@example.com", "a***@example.com"),  # masked already: the same
])
def test_an_email_keeps_its_first_letter_and_domain(email: str, shown: str) -> None:
    assert mask_email(email) == shown


def test_every_personal_field_is_masked_at_any_depth() -> None:
    assert set(PERSONAL_FIELDS) == set(PARTNER)
    state = {"saga_id": "s-1", "status": "failed", "partner_id": "p-1", "partner": dict(PARTNER),
             "applied": [{"event_id": "e", "commands": [{"type": "CreatePartner", "data": dict(PARTNER)}]}],
             "captures": {"contract_id": "k-1"}, "attempt": 2, "deadline": None,
             "transitions": [{"to_status": "failed", "at": 1.5}]}
    before = copy.deepcopy(state)
    out = masked(state)
    assert state == before  # a copy; the input is left as it was
    hidden = {"nombre": "***", "email": "a***@example.com", "telefono": "***", "direccion": "***"}
    assert out["partner"] == out["applied"][0]["commands"][0]["data"] == hidden
    assert {k: v for k, v in out.items() if k not in ("partner", "applied")} == \
        {k: v for k, v in state.items() if k not in ("partner", "applied")}


def test_an_email_written_in_free_text_is_masked_too() -> None:
    row = {"reason": "HTTP 409 EMAIL_EXISTENTE, and no partner with email ana.perez@example.com",
           "correlation_id": "order-7 <bob@corp.example>"}
    assert masked(row) == {"reason": "HTTP 409 EMAIL_EXISTENTE, and no partner with email a***@example.com",
                           "correlation_id": "order-7 <b***@corp.example>"}


def test_empty_values_and_odd_shapes() -> None:
    assert masked({"partner": {"nombre": "X", "email": "x@y", "telefono": None, "direccion": ""}}) == \
        {"partner": {"nombre": "***", "email": "x***@y", "telefono": None, "direccion": ""}}
    # A personal field holding a structure is masked whole, not walked into.
    assert masked({"nombre": {"first": "Ana"}, "email": ["a@b"]}) == {"nombre": "***", "email": "***"}
    assert masked([1, "x", None, True, {"sagas": []}]) == [1, "x", None, True, {"sagas": []}]


def test_masking_twice_is_masking_once() -> None:
    doc = {"partner": dict(PARTNER), "reason": "no partner with email ana.perez@example.com"}
    assert masked(masked(doc)) == masked(doc)
