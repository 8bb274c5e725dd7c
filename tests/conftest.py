"""Fixtures shared by the integration and end-to-end tests (unit tests need none)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from simulators.participants import Behaviour, Participants
from tests.support.pulsar import Tap, connect
from tests.support.stack import PULSAR_URL, drop_topics, require_stack
from tests.support.worker import Names, Worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop parts of the stack (tests/e2e/test_faults.py) run last, so that no
    other test meets a broker that is just coming back."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


@pytest.fixture(scope="session")
def stack() -> None:
    require_stack()


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    """Names of this test's topics; its Kafka topics are deleted afterwards, so that a long
    session does not leave the one-node broker with thousands of partitions to look after."""
    n = Names()
    yield n
    try:
        await drop_topics(n.app_id)
    except KafkaConnectionError:
        pass  # the stack is down (a test about that failed already); nothing to tidy


@pytest.fixture
def workers(stack: None, names: Names, tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers started by the test (via `spawn`); all stopped at the end, logs kept on failure."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


@pytest.fixture
def spawn(workers: list[Worker], names: Names, tmp_path: Path):  # type: ignore[no-untyped-def]
    def _spawn(name: str = "w", env: dict[str, str] | None = None, datadir: Path | None = None) -> Worker:
        w = Worker(names, datadir or tmp_path / f"data-{name}", env=env, name=name).start()
        workers.append(w)
        return w

    return _spawn


@pytest.fixture
async def pulsar_client(stack: None) -> AsyncIterator[object]:
    client = connect(PULSAR_URL)
    yield client
    await client.close()


@pytest.fixture
async def taps(pulsar_client, names: Names) -> AsyncIterator[dict[str, Tap]]:  # type: ignore[no-untyped-def]
    """Lifecycle, dead letters and both command topics, tapped from their first message."""
    t = {
        "lifecycle": await Tap(pulsar_client, names.lifecycle).start(),
        "dead": await Tap(pulsar_client, names.dead_letters).start(),
        "integraciones": await Tap(pulsar_client, names.integraciones_commands).start(),
        "alianzas": await Tap(pulsar_client, names.alianzas_commands).start(),
    }
    yield t
    for tap in t.values():
        await tap.stop()


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture
async def participants(stack: None, names: Names, behaviour: Behaviour) -> AsyncIterator[Participants]:
    sims = Participants(PULSAR_URL, behaviour, integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events)
    await sims.start()
    yield sims
    await sims.stop()
