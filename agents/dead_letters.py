"""Sending a message that cannot be processed to the dead-letter topic, without the partner's
personal data in clear.

The letter's value is the message as received with its personal fields masked
(domain.privacy.redacted_message; the very bytes received when there was nothing to mask), its
reason (email addresses masked too) and where it came from are headers. When the value had to
be masked, the original is kept beside it, sealed (header `sealed`: Fernet, common/sealing.py,
keys from DEAD_LETTER_KEYS or DATADIR/dead-letter.key): whoever holds the key can read it back
(`python -m orchestrator dead-letters unseal`), nobody else. Nothing is lost, nothing leaks.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable
from functools import cache

from faust.types import RecordMetadata

from common.sealing import Sealer
from domain.privacy import masked, redacted_message
from runtime.app import cfg
from runtime.metrics import METRICS, reason_class
from streams.partner_saga import dead_letters
from tables.writer import Batch

__all__ = ["SEAL_LIMIT", "dead_letter", "dead_letter_in", "letter"]

log = logging.getLogger(__name__)

#: Originals larger than this are not sealed (the sealed form is a third larger, and a Kafka
#: record is 1 MiB at most): the letter then says how large it was and its digest.
SEAL_LIMIT = 512 * 1024


@cache
def _sealer() -> Sealer:
    return cfg.dead_letter_sealer(create=True)


def letter(original: bytes, reason: str, *, origin: str, message_id: str = "",
           sealer: Sealer | None = None) -> tuple[bytes, dict[str, bytes]]:
    """The dead letter of `original`: its value and headers."""
    value = redacted_message(original)
    headers = {
        "reason": masked(reason)[:1000].encode(errors="replace"),
        "origin": origin.encode(),
        "message_id": message_id.encode(),
        "dead_lettered_at": f"{time.time():.3f}".encode(),
    }
    if value != original:
        headers["redacted"] = b"personal data masked"
        if len(original) <= SEAL_LIMIT:
            headers["sealed"] = (sealer or _sealer()).seal(original)
        else:
            headers["redacted"] += (f"; the original ({len(original)} bytes, sha256 "
                                    f"{hashlib.sha256(original).hexdigest()}) is too large to keep").encode()
    return value, headers


async def dead_letter(original: bytes, reason: str, *, origin: str, key: bytes | None = None,
                      message_id: str = "") -> Awaitable[RecordMetadata]:
    """Queue `original` (as received) with its reason; return the future of Kafka's
    acknowledgement. In an agent, the producer flush before the offset commit makes it
    durable before the source offset moves on; the Pulsar bridge awaits the future."""
    value, headers = letter(original, reason, origin=origin, message_id=message_id)
    METRICS.inc("dead_letters_total", origin=origin.rsplit("/", 1)[-1], reason=reason_class(reason))
    log.warning("dead letter from %s: %s", origin, headers["reason"].decode())
    return await dead_letters.send(key=key, value=value, headers=headers)


def dead_letter_in(batch: Batch, original: bytes, reason: str, *, origin: str, key: bytes | None = None,
                   message_id: str = "") -> None:
    """`dead_letter`, as one of `batch`'s messages: durable with the rest of the batch."""
    value, headers = letter(original, reason, origin=origin, message_id=message_id)
    METRICS.inc("dead_letters_total", origin=origin.rsplit("/", 1)[-1], reason=reason_class(reason))
    log.warning("dead letter from %s: %s", origin, headers["reason"].decode())
    batch.send(dead_letters.get_topic_name(), key, value, headers=headers)
