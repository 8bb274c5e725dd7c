"""Sealing what must be kept but not read by everyone: a dead letter's original message, when
the letter itself shows it with the partner's personal data masked (agents/dead_letters.py).

Fernet from `cryptography` (AES-128-CBC with HMAC-SHA256, a timestamp, URL-safe base64: the
sealed form is ASCII, so it travels as a Kafka header and a Pulsar property), through
`MultiFernet`: the first key seals, every key unseals, so a key is rotated by putting the new
one first and dropping the old one once no letter sealed with it is kept. No crypto of our own.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["InvalidToken", "Sealer", "new_key", "parse_keys"]


def new_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(text: str) -> list[str]:
    """Keys separated by commas or new lines (a file: one per line, `#` comments)."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys += [k.strip() for k in line.split(",") if k.strip()]
    return keys


class Sealer:
    def __init__(self, keys: Iterable[str]) -> None:
        fernets = []
        for n, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ValueError(f"key {n} is not a Fernet key (32 bytes in URL-safe base64, as "
                                 f"`python -m orchestrator dead-letters new-key` prints)") from None
        if not fernets:
            raise ValueError("no key")
        self._fernet = MultiFernet(fernets)

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def unseal(self, token: bytes | str) -> bytes:
        """The original; InvalidToken when no key opens it (or it was altered)."""
        return self._fernet.decrypt(token.encode() if isinstance(token, str) else token)
