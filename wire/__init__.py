"""Bytes on the wire <-> domain messages: CloudEvents 1.0 (structured-mode JSON) on Pulsar,
and the orchestrator's internal JSON on Kafka. Every decoding error is a `WireError` whose
message is the reason recorded with the dead letter."""

from wire.cloudevents import (
    MAX_MESSAGE_BYTES,
    Inbound,
    WireError,
    decode_inbound,
    encode_command,
    encode_event,
)
from wire.internal import PartnerRouted, SagaEnvelope

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Inbound",
    "PartnerRouted",
    "SagaEnvelope",
    "WireError",
    "decode_inbound",
    "encode_command",
    "encode_event",
]
