"""One message to send to a participant, as the outbound bridge sends it and the saga agent
plans it: (Pulsar topic, payload, properties, partition key)."""

from __future__ import annotations

__all__ = ["Outgoing"]

Outgoing = tuple[str, bytes, dict[str, str], str | None]
