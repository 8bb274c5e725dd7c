"""The partner's personal data: which fields hold it, and how it is hidden.

- `masked(doc)`: as a reader without the `operate` role sees it, for every JSON answer of the
  HTTP API to such a reader (orchestrator/auth.py applies it), and in every dead letter
  (agents/dead_letters.py): a saga's state (live, snapshot or tombstone), the lists, the
  history, a participant's message. Masking twice gives the same result.
- `redacted_message(raw)`: a message as received, for a dead letter: the same masking when it
  is JSON; when it cannot be read, personal fields recognised by name (a truncated JSON) and
  email addresses are masked in its bytes. The same bytes when nothing was found.
- `ERASED`: what an erased field holds (domain.transition, ErasureRequested), and
  `without_emails(text)` for free text kept after an erasure (a participant's error quoted in
  a saga's `reason`).
Standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["ERASED", "MASK", "PERSONAL_FIELDS", "mask_email", "masked", "redacted_message", "without_emails"]

#: The partner's personal data, in a state's `partner` and in its commands' `data`.
PERSONAL_FIELDS = ("nombre", "email", "telefono", "direccion")
MASK = "***"
#: What a personal field holds once erased.
ERASED: Final = "[erased]"
#: An email address inside free text (a participant's error quoted in a saga's `reason`).
_EMAIL_IN_TEXT = re.compile(r"[^\s@,;:\"'<>()\[\]{}]+@[^\s@,;:\"'<>()\[\]{}]+")


def mask_email(email: str) -> str:
    """`ana@example.com` -> `a***@example.com`: the first character and the domain stay, so
    that a reader can tell two partners apart and see whose mail server it is."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def _mask_field(name: str, value: Any) -> Any:
    if value is None or value == "" or value == ERASED:
        return value  # nothing to hide; saying there is nothing is no personal data
    if name == "email" and isinstance(value, str):
        return mask_email(value)
    return MASK  # whatever it holds, a string or not


def masked(doc: Any) -> Any:
    """A copy of `doc` (JSON: dicts, lists, strings, numbers) in which every personal field
    (`nombre`, `email`, `telefono`, `direccion`), at any depth (a saga's `partner`, a command's
    `data`), is masked, and every email address written inside another string is too."""
    if isinstance(doc, dict):
        return {k: _mask_field(k, v) if k in PERSONAL_FIELDS else masked(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [masked(v) for v in doc]
    if isinstance(doc, str) and "@" in doc:
        return _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), doc)
    return doc


def without_emails(text: str) -> str:
    """`text` with every email address in it replaced by ERASED."""
    return _EMAIL_IN_TEXT.sub(ERASED, text) if "@" in text else text


# The same, in bytes that are not JSON: a personal field's string value (a closing quote that
# was cut off included), and an email address.
_FIELD_IN_BYTES = re.compile(
    rb'("(?:' + b"|".join(f.encode() for f in PERSONAL_FIELDS) + rb')"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)')
_EMAIL_IN_BYTES = re.compile(rb"[^\s@,;:\"'<>()\[\]{}]+@[^\s@,;:\"'<>()\[\]{}]+")


def redacted_message(raw: bytes) -> bytes:
    """`raw` (a message as received) with the partner's personal data masked; `raw` itself
    when there was none to mask."""
    try:
        doc = json.loads(raw)
        hidden = masked(doc)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError included), too deep
        out = _FIELD_IN_BYTES.sub(lambda m: m.group(1) + f'"{MASK}"'.encode(), raw)
        return _EMAIL_IN_BYTES.sub(
            lambda m: mask_email(m.group(0).decode("utf-8", "replace")).encode(), out)
    if hidden == doc:
        return raw
    text = json.dumps(hidden, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (a "\ud800" escape): escaped, still JSON
        return json.dumps(hidden).encode()
