"""The worker's Kafka consumer long-polls for KAFKA_FETCH_MAX_WAIT_MS, not Faust's fixed 1.5 s
(a busy partition's next records wait behind a fetch of the quiet ones for up to that long;
orchestrator/kafka_transport.py)."""

from __future__ import annotations

import pytest

from orchestrator.app import create_app
from orchestrator.config import load_settings


@pytest.mark.parametrize("wait_ms", [50, 250])
async def test_the_worker_consumer_long_polls_for_the_configured_time(
        monkeypatch: pytest.MonkeyPatch, tmp_path, wait_ms: int) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", str(wait_ms))
    monkeypatch.setenv("APP_ID", "transport-unit-test")
    monkeypatch.setenv("DATADIR", str(tmp_path))
    app = create_app(load_settings())
    thread = app.consumer._thread  # the consumer is built, never started: no broker is needed
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the consumer thread's own loop, never run here


def test_the_setting_rejects_a_wait_that_is_not_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.config import ConfigError
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ConfigError, match="KAFKA_FETCH_MAX_WAIT_MS"):
        load_settings()
