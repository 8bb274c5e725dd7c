"""The worker on the real stack: one readable line for bad settings, a quick join, and
table state that survives SIGKILL plus an empty datadir (recovered from the changelog)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.flows import TERMINAL_EVENTS, ended, publish_partners
from tests.support.worker import ROOT

pytestmark = pytest.mark.stack


def _start_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "worker", "--web-port", "0"],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("var", "value"), [
    ("BROKER_URL", "http://localhost:6650"),
    ("DATABASE_URL", "mysql://x@localhost/db"),
    ("KAFKA_BROKER_URL", "localhost:9092"),
    ("TOPIC_PARTITIONS", "eight"),
    ("WEB_PORT", "70000"),
    ("INTEGRACIONES_API_URL", "not a url"),
])
def test_a_malformed_setting_is_one_line_naming_it(stack: None, var: str, value: str) -> None:
    run = _start_worker({var: value})
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert var in lines[0] and "Traceback" not in run.stderr


@pytest.mark.parametrize("var", ["KAFKA_BROKER_URL", "BROKER_URL"])
def test_an_unreachable_service_is_one_line_naming_it(stack: None, var: str) -> None:
    url = {"KAFKA_BROKER_URL": "kafka://127.0.0.1:1", "BROKER_URL": "pulsar://127.0.0.1:1"}[var]
    run = _start_worker({var: url})
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and var in lines[0] and "127.0.0.1:1" in lines[0], run.stderr


async def test_table_state_is_recovered_from_the_changelog_after_sigkill(
        spawn, participants, taps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    datadir = tmp_path / "data-a"
    first = spawn("a", datadir=datadir)
    await first.wait_ready(timeout=30)  # joined its group and recovered its tables
    await publish_partners(participants, 40)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 40, 60, "40 sagas to end")
    before = {}
    for saga_id in ended(taps["lifecycle"]):
        status, body = await first.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200, body
        assert body["status"] in ("completed", "compensated")
        before[saga_id] = body

    first.kill(signal.SIGKILL)
    shutil.rmtree(datadir)  # nothing local left: only Kafka's changelog has the state
    second = spawn("b", datadir=tmp_path / "data-b")
    await second.wait_ready(timeout=60)
    for saga_id, state in before.items():
        status, body = await second.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200, body
        assert body == state
    assert set(TERMINAL_EVENTS) >= {t for ts in ended(taps["lifecycle"]).values() for t in ts}
