"""CloudEvents 1.0, structured-mode JSON, as participants publish and receive them.

Inbound envelopes need `specversion` "1.0", `id`, `type` and an object `data`; `source`
may be replaced by the first version's `service_name`. The orchestrator adds the extension
attributes `sagaid` and `correlationid` to everything it sends; participants may echo them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from domain.messages import PARTICIPANT_EVENT_TYPES, Command

__all__ = ["MAX_MESSAGE_BYTES", "Inbound", "WireError", "decode_inbound", "encode_command", "encode_event"]

MAX_MESSAGE_BYTES = 64 * 1024
SOURCE = "/saga-orchestrator"


class WireError(ValueError):
    """A message that cannot become a domain event; str(exc) is the dead-letter reason."""


@dataclass(frozen=True)
class Inbound:
    """A valid participant event, before it is routed to its saga."""

    type: str
    event_id: str
    saga_id: str | None
    correlation_id: str | None
    partner_id: str | None
    fields: dict[str, Any]  # the domain event's fields except event_id / saga_id
    text: str = ""  # the message as received (UTF-8), for dead letters further on

    def event(self, saga_id: str) -> Any:
        model = PARTICIPANT_EVENT_TYPES[self.type]
        return model(event_id=self.event_id, saga_id=saga_id,
                     correlation_id=self.correlation_id, **self.fields)


_ROUTING_FIELDS = frozenset({"type", "event_id", "saga_id", "correlation_id"})


def _str_attr(ce: dict[str, Any], name: str) -> str | None:
    v = ce.get(name)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise WireError(f"attribute {name!r} must be a string, got {type(v).__name__}")
    if len(v) > 200 or not v.isprintable():
        raise WireError(f"attribute {name!r} must be printable and at most 200 characters")
    return v


def decode_inbound(raw: bytes) -> Inbound:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise WireError(f"oversized: {len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"not JSON: not UTF-8 ({exc})") from exc
    try:
        ce = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise WireError("not JSON: nested too deeply") from exc
    if not isinstance(ce, dict):
        raise WireError(f"not a CloudEvent: top level is {type(ce).__name__}, not an object")
    missing = [a for a in ("specversion", "id", "type") if a not in ce]
    if missing:
        raise WireError(f"not a CloudEvent: missing {', '.join(missing)}")
    if ce["specversion"] != "1.0":
        raise WireError(f"unsupported specversion {ce['specversion']!r}, expected '1.0'")
    event_id, etype = _str_attr(ce, "id"), _str_attr(ce, "type")
    if not event_id or not etype:
        raise WireError("not a CloudEvent: empty id or type")
    if _str_attr(ce, "source") is None and _str_attr(ce, "service_name") is None:
        raise WireError("not a CloudEvent: missing source (or service_name)")
    if etype not in PARTICIPANT_EVENT_TYPES:
        raise WireError(f"unknown event type {etype!r}")
    data = ce.get("data")
    if not isinstance(data, dict):
        raise WireError(f"{etype}: data must be an object, got {type(data).__name__}")
    saga_id, correlation_id = _str_attr(ce, "sagaid"), _str_attr(ce, "correlationid")
    # Routing comes from the envelope's attributes only, never from data.
    fields = {k: v for k, v in data.items() if k not in _ROUTING_FIELDS}
    if etype == "PartnerCreated":
        fields = {"partner_id": data.get("partner_id"),
                  "partner": {k: data.get(k) for k in ("nombre", "email", "telefono", "direccion")}}
    try:
        # Validate now, at the edge, with placeholder routing fields.
        PARTICIPANT_EVENT_TYPES[etype](event_id=event_id, saga_id="-", correlation_id=correlation_id,
                                       **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise WireError(f"{etype}: invalid data.{where}: {first.get('msg')}") from exc
    partner_id = data.get("partner_id") if isinstance(data.get("partner_id"), str) else None
    return Inbound(etype, event_id, saga_id, correlation_id, partner_id, fields, text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_command(cmd: Command) -> bytes:
    """A command or lifecycle notice as a CloudEvent; its id is the command's deterministic id."""
    return json.dumps(
        {"specversion": "1.0", "id": cmd.command_id, "type": cmd.type, "source": SOURCE,
         "time": _now(), "datacontenttype": "application/json",
         "sagaid": cmd.saga_id, "correlationid": cmd.correlation_id, "data": cmd.data},
        separators=(",", ":"),
    ).encode()


def encode_event(event_type: str, event_id: str, data: dict[str, Any], *, source: str,
                 saga_id: str | None = None, correlation_id: str | None = None) -> bytes:
    """A participant's event (used by the simulators and tests)."""
    ce: dict[str, Any] = {"specversion": "1.0", "id": event_id, "type": event_type,
                          "source": source, "time": _now(), "datacontenttype": "application/json",
                          "data": data}
    if saga_id:
        ce["sagaid"] = saga_id
    if correlation_id:
        ce["correlationid"] = correlation_id
    return json.dumps(ce, separators=(",", ":")).encode()


