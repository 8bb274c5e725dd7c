"""Dead letters without the partner's personal data in clear: the value masked (the very bytes
received when there is nothing to mask), the reason too, the original sealed beside it and read
back with the key only; the keys' settings and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.dead_letters import SEAL_LIMIT, letter
from common.sealing import InvalidToken, Sealer, new_key, parse_keys
from domain.privacy import redacted_message
from runtime.settings import ConfigError, Settings, load_settings
from wire.cloudevents import encode_event

PARTNER = {"nombre": "Zoila Privada", "email": "zoila.privada@example.org", "telefono": "+57 310 1112233",
           "direccion": "Carrera 9 # 8-7"}
SEALER = Sealer([new_key()])


def clear(data: bytes | str) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [v for v in PARTNER.values() if v in text]


def test_a_message_with_personal_data_is_masked_and_its_original_sealed() -> None:
    raw = encode_event("PartnerCreated", "ev-1", {"partner_id": "p-1", **PARTNER, "email": "not-an-email"},
                       source="/x")
    value, headers = letter(raw, f"invalid data.email for {PARTNER['email']}", origin="t", sealer=SEALER)
    assert not clear(value) and not clear(headers["reason"]) and "not-an-email" not in value.decode()
    doc = json.loads(value)
    assert doc["id"] == "ev-1" and doc["data"]["partner_id"] == "p-1" and doc["data"]["nombre"] == "***"
    assert headers["reason"] == b"invalid data.email for z***@example.org"
    assert headers["redacted"] == b"personal data masked"
    assert SEALER.unseal(headers["sealed"]) == raw  # nothing lost, for whoever holds the key
    with pytest.raises(InvalidToken):
        Sealer([new_key()]).unseal(headers["sealed"])


@pytest.mark.parametrize("raw", [
    b"not json at all", b"\xff\xfe\x00binary", b"", b'{"a": 1}',
    json.dumps({"type": "AllianceCreated", "data": {"partner_id": "p"}}).encode()])
def test_a_message_without_personal_data_is_kept_as_received(raw: bytes) -> None:
    value, headers = letter(raw, "not JSON", origin="t", sealer=SEALER)
    assert value == raw and "sealed" not in headers and "redacted" not in headers


@pytest.mark.parametrize("raw", [
    # Cut off in the middle: not JSON, but its fields have names.
    json.dumps({"data": PARTNER}).encode()[:-12],
    ("garbage " + PARTNER["email"] + " more").encode(),
    b'\x00\x01"nombre":"' + PARTNER["nombre"].encode() + b'","email" : "' + PARTNER["email"].encode(),
])
def test_unreadable_messages_lose_named_fields_and_email_addresses(raw: bytes) -> None:
    value, headers = letter(raw, "not JSON", origin="t", sealer=SEALER)
    assert not [v for v in ("Zoila Privada", PARTNER["email"]) if v.encode() in value], value
    assert SEALER.unseal(headers["sealed"]) == raw


def test_a_huge_original_is_described_not_sealed() -> None:
    raw = json.dumps({"data": {**PARTNER, "pad": "x" * SEAL_LIMIT}}).encode()
    value, headers = letter(raw, "oversized", origin="t", sealer=SEALER)
    assert not clear(value) and "sealed" not in headers
    assert b"too large to keep" in headers["redacted"] and b"sha256" in headers["redacted"]


def test_masking_twice_changes_nothing_more() -> None:
    once = redacted_message(json.dumps({"data": PARTNER}).encode())
    assert redacted_message(once) == once


def test_keys_rotate_the_first_seals_every_one_unseals() -> None:
    old, new = new_key(), new_key()
    sealed_before = Sealer([old]).seal(b"x")
    rotated = Sealer(parse_keys(f"{new}\n# the previous one, until its letters are gone\n{old}"))
    assert rotated.unseal(sealed_before) == b"x"
    assert Sealer([new]).unseal(rotated.seal(b"y")) == b"y"


def test_a_worker_without_keys_makes_its_own_once(tmp_path: Path) -> None:
    cfg = Settings(DATADIR=str(tmp_path / "d"))
    sealed = cfg.dead_letter_sealer(create=True).seal(b"x")
    key_file = tmp_path / "d" / "dead-letter.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert Settings(DATADIR=str(tmp_path / "d")).dead_letter_sealer().unseal(sealed) == b"x"
    assert Settings(DEAD_LETTER_KEYS_FILE=str(key_file)).dead_letter_sealer().unseal(sealed) == b"x"


GOOD_KEY = new_key()


@pytest.mark.parametrize(("env", "says", "secret"), [
    ({"DEAD_LETTER_KEYS": "not-a-key"}, "DEAD_LETTER_KEYS: key 1 is not a Fernet key", "not-a-key"),
    ({"DEAD_LETTER_KEYS": f"{GOOD_KEY},tooshort"}, "key 2 is not a Fernet key", "tooshort"),
    ({"DEAD_LETTER_KEYS_FILE": "/nonexistent/keys"}, "DEAD_LETTER_KEYS_FILE: cannot read /nonexistent/keys",
     GOOD_KEY),
])
def test_a_bad_key_is_one_line_naming_the_setting_not_the_key(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str, secret: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        load_settings()
    line = str(err.value)
    assert says in line and "\n" not in line and secret not in line and GOOD_KEY not in line


def test_a_lone_surrogate_in_a_message_to_mask_stays_json() -> None:
    # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 can encode (found by the
    # hostile-message generator of `make chaos`).
    raw = b'{"data": {"partner_id": "x\\ud800", "email": "ana@example.com"}}'
    value, headers = letter(raw, "invalid", origin="t", sealer=SEALER)
    assert json.loads(value) == {"data": {"partner_id": "x\ud800", "email": "a***@example.com"}}
    assert SEALER.unseal(headers["sealed"]) == raw
