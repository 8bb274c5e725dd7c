"""Sending a message that cannot be processed to the dead-letter topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from faust.types import RecordMetadata

from orchestrator.metrics import METRICS, reason_class
from streams.partner_saga import dead_letters

__all__ = ["dead_letter"]

log = logging.getLogger(__name__)


async def dead_letter(original: bytes, reason: str, *, origin: str, key: bytes | None = None,
                      message_id: str = "") -> Awaitable[RecordMetadata]:
    """Queue `original` (as received) with its reason; return the future of Kafka's
    acknowledgement. In an agent, the producer flush before the offset commit makes it
    durable before the source offset moves on; the Pulsar bridge awaits the future."""
    METRICS.inc("dead_letters_total", origin=origin.rsplit("/", 1)[-1], reason=reason_class(reason))
    log.warning("dead letter from %s: %s", origin, reason)
    return await dead_letters.send(
        key=key,
        value=original,
        headers={
            "reason": reason[:1000].encode(),
            "origin": origin.encode(),
            "message_id": message_id.encode(),
            "dead_lettered_at": f"{time.time():.3f}".encode(),
        },
    )
