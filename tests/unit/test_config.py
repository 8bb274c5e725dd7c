"""Settings: the first version's variables and one readable line for a bad value."""

from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, load_settings


def test_defaults_match_the_first_version(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BROKER_URL", "DATABASE_URL", "KAFKA_BROKER_URL", "TOPIC_PARTITIONS"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.broker_url == "pulsar://localhost:6650"
    assert s.database_url == "postgresql://postgres:postgres@localhost:5432/saga_db"
    assert s.kafka_broker_url == "kafka://localhost:9092" and s.topic_partitions == 8
    assert s.pulsar_topic(s.partner_events_topic) == "persistent://public/default/partner-events"


@pytest.mark.parametrize(("var", "value"), [
    ("BROKER_URL", "kafka://x:1"), ("DATABASE_URL", "nope"), ("KAFKA_BROKER_URL", "x:9092"),
    ("TOPIC_PARTITIONS", "0"), ("SAGA_REPLY_TIMEOUT_S", "-1"), ("TABLE_STORE", "memory://"),
    ("ALIANZAS_API_URL", "ftp://x"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str,
                                                     value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert var in message and "\n" not in message
