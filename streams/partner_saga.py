"""Kafka topics of the partner-creation saga, named after the app id (APP_ID, default
saga-orchestrator), like Faust's changelog topics. Every key is a plain UTF-8 string: the
saga id on -events, the partner id on -partner-routing."""

from __future__ import annotations

from typing import TypedDict

import faust

from runtime.app import app, cfg

__all__ = ["dead_letters", "outbox", "partner_routing", "raw_schema", "saga_events"]


def raw_schema() -> faust.Schema[bytes, bytes]:
    """The one key (and value) serialization of every saga topic and table: raw bytes.
    Values are JSON encoded by pydantic in wire/ and domain/; keys are UTF-8 ids.
    A new Schema each time: Faust updates a table's schema in place."""
    return faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")


class _TopicOptions(TypedDict):
    schema: faust.Schema[bytes, bytes]
    partitions: int


def _common() -> _TopicOptions:
    return {"schema": raw_schema(), "partitions": cfg.topic_partitions}


#: Every event of a saga, keyed by saga id: routed participant replies, HTTP starts,
#: deadlines and operator requests. The saga agent consumes it.
saga_events = app.topic(f"{cfg.app_id}-events", **_common())

#: Participant events that name a partner but not (for sure) a saga, keyed by partner id:
#: the resolver looks the saga up in the partner -> saga index and forwards to saga-events.
partner_routing = app.topic(f"{cfg.app_id}-partner-routing", **_common())

#: Messages that could not be processed: original bytes as the value, the reason in headers.
dead_letters = app.topic(f"{cfg.app_id}-dead-letters", **_common())

#: The saga's commands (wire.internal.OutboxEntry), keyed by saga id, in the partition of the
#: saga's events: written with the saga's new state, in the same produce, and sent on to the
#: participants by the outbox bridge (bridges/outbox.py), in partition order.
outbox = app.topic(f"{cfg.app_id}-outbox", **_common())
