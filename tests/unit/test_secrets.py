"""Secrets and addresses stay out of answers and logs (#10, security): the password of a URL
never appears in a configuration error or a snapshot-store error, and what an HTTP answer
says about PostgreSQL names the component only."""

from __future__ import annotations

import pytest

from runtime.errors import StoreUnavailable
from runtime.settings import ConfigError, load_settings, redact
from snapshots.store import SnapshotStore

SECRET = "s3cret-Pa55"


def test_redact_hides_only_the_password() -> None:
    assert redact(f"postgresql://saga:{SECRET}@db.internal:5432/saga_db") == \
        "postgresql://saga:***@db.internal:5432/saga_db"
    assert redact("postgresql://db:5432/x") == "postgresql://db:5432/x"
    assert redact("pulsar://broker:6650") == "pulsar://broker:6650"


def test_a_configuration_error_does_not_print_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://saga:{SECRET}@db:3306/x")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "DATABASE_URL" in str(err.value) and SECRET not in str(err.value)


async def test_an_unreachable_database_error_keeps_the_password_and_host_out() -> None:
    # Port 1 on the loopback: refused at once, no server needed.
    store = SnapshotStore(f"postgresql://saga:{SECRET}@127.0.0.1:1/saga_db")
    with pytest.raises(StoreUnavailable) as err:
        await store.ping()
    assert "PostgreSQL unavailable" in str(err.value) and SECRET not in str(err.value)
    assert err.value.public == "PostgreSQL unavailable"  # what /ready and 503 bodies say
    await store.close()
