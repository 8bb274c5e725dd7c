"""Settings: the first version's variables and one readable line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import ConfigError, load_settings


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


# --- the HTTP API's tokens (README, "Security") -------------------------------------------------
TOKEN_VARS = ("OPERATOR_TOKEN", "API_READ_TOKENS", "API_START_TOKENS", "API_OPERATE_TOKENS", "API_AUTH")


@pytest.fixture
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in TOKEN_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(f"{var}_FILE", raising=False)
    return monkeypatch


def test_no_token_by_default_and_closed(no_tokens: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.api_auth == "token" and s.api_tokens() == {}


def test_each_role_has_its_tokens_and_the_operator_token_every_role(no_tokens: pytest.MonkeyPatch) -> None:
    no_tokens.setenv("OPERATOR_TOKEN", "operator-token-0123456789")
    no_tokens.setenv("API_READ_TOKENS", "reader-one-0123456789, reader-two-0123456789")
    no_tokens.setenv("API_START_TOKENS", "starter-0123456789,reader-one-0123456789")
    no_tokens.setenv("API_OPERATE_TOKENS", "operates-0123456789")
    assert load_settings().api_tokens() == {
        "operator-token-0123456789": {"read", "start", "operate"},
        "reader-one-0123456789": {"read", "start"}, "reader-two-0123456789": {"read"},
        "starter-0123456789": {"start"}, "operates-0123456789": {"operate"}}


def test_tokens_come_from_files_too(no_tokens: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "read-tokens"
    secret.write_text("# rotated 2026-01-01\nold-reader-0123456789\nnew-reader-0123456789\n")
    (tmp_path / "operator").write_text("operator-from-file-0123456789\n")  # a Docker secret's newline
    no_tokens.setenv("API_READ_TOKENS_FILE", str(secret))
    no_tokens.setenv("API_READ_TOKENS", "reader-from-env-0123456789")
    no_tokens.setenv("OPERATOR_TOKEN_FILE", str(tmp_path / "operator"))
    tokens = load_settings().api_tokens()
    assert tokens == {"old-reader-0123456789": {"read"}, "new-reader-0123456789": {"read"},
                      "reader-from-env-0123456789": {"read"},
                      "operator-from-file-0123456789": {"read", "start", "operate"}}


def test_set_but_empty_is_unset(no_tokens: pytest.MonkeyPatch) -> None:
    for var in TOKEN_VARS[:-1]:  # what a compose file's ${VAR:-} gives
        no_tokens.setenv(var, "")
        no_tokens.setenv(f"{var}_FILE", "")
    assert load_settings().api_tokens() == {}


@pytest.mark.parametrize(("var", "value", "says"), [
    ("OPERATOR_TOKEN", "short-secret", "shorter than 16 characters"),
    ("API_READ_TOKENS", "fine-token-0123456789,short-secret", "token 2 of 2 is shorter than 16"),
    ("API_START_TOKENS", "a token with spaces-but-long", "shorter than 16"),
    ("API_OPERATE_TOKENS", 'quote"in-the-token-0123456789', "a character other than"),
    ("API_AUTH", "none", "API_AUTH"),
])
def test_a_bad_token_stops_the_start_with_one_line_without_the_token(no_tokens: pytest.MonkeyPatch, var: str,
                                                                     value: str, says: str) -> None:
    no_tokens.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"configuration error: {var}: ") and says in message and "\n" not in message
    assert "short-secret" not in message and "0123456789" not in message


@pytest.mark.parametrize(("content", "says"), [(None, "cannot read"), ("", "no token in"),
                                               ("# only a comment\n", "no token in"),
                                               ("tiny\n", "shorter than 16")])
def test_a_bad_token_file_stops_the_start_with_one_line(no_tokens: pytest.MonkeyPatch, tmp_path: Path,
                                                        content: str | None, says: str) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    no_tokens.setenv("API_OPERATE_TOKENS_FILE", str(path))
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith("configuration error: API_OPERATE_TOKENS_FILE: ") and says in message
    assert "\n" not in message and "tiny" not in message


def test_the_settings_never_show_a_token(no_tokens: pytest.MonkeyPatch) -> None:
    no_tokens.setenv("OPERATOR_TOKEN", "operator-token-0123456789")
    no_tokens.setenv("API_READ_TOKENS", "reader-token-0123456789")
    s = load_settings()
    assert "0123456789" not in repr(s) and "0123456789" not in str(s)


def test_open_on_purpose(no_tokens: pytest.MonkeyPatch) -> None:
    no_tokens.setenv("API_AUTH", "open")
    assert load_settings().api_auth == "open"
