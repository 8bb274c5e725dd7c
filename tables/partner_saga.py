"""Tables of the partner-creation saga (RocksDB store, changelog in Kafka).

Keys are raw UTF-8 strings, as on the topics that feed them (see streams/partner_saga.py),
so `app.table_route` sends a web request to the worker that owns the key.
"""

from __future__ import annotations

from orchestrator.app import app, cfg

__all__ = ["deadlines", "partner_sagas", "sagas"]



def _common() -> dict[str, object]:
    # Faust picks a table's serializers from its key/value types: bytes means raw, the same
    # as the topics' raw_schema(). Anything else would silently mean json.
    return {"key_type": bytes, "value_type": bytes, "partitions": cfg.topic_partitions}


#: saga id -> SagaState as JSON. Written by agents.partner_saga from saga-events.
sagas = app.Table("sagas", help="saga id -> saga state (JSON)", **_common())

#: partner id -> saga id. Written by agents.partner_routing from saga-partner-routing.
partner_sagas = app.Table("partner-sagas", help="partner id -> saga id", **_common())

#: The deadline index: "<window>:<saga id>" -> DeadlineReached fields (JSON), one entry per
#: saga that waits. Written by the saga agent in the saga's partition; read by the timer in
#: tables/deadline_index.py, which scans only the windows that are due.
deadlines = app.Table("saga-deadlines", help="due window:saga id -> deadline", **_common())
