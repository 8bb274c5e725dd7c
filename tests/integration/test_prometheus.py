"""The Grafana dashboard's every query, evaluated by a real Prometheus (Debian's package,
installed by `make test`) scraping a real worker; and the dashboard's JSON checked against
what Grafana needs of it (Grafana itself is not packaged for Debian)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from simulators.participants import Behaviour
from tests.support.flows import ended, publish_partners
from tests.support.worker import ROOT, Worker, free_port

pytestmark = pytest.mark.stack

DASHBOARD = ROOT / "deploy" / "grafana" / "saga-orchestrator.json"


def queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_the_dashboard_is_what_grafana_loads() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "saga-orchestrator" and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    for p in dash["panels"]:
        assert p["type"] == "timeseries" and p["title"] and p["datasource"]["uid"] == "prometheus"
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in p["targets"])
    datasources = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
    provisioned = yaml.safe_load(datasources.read_text())
    assert [d["uid"] for d in provisioned["datasources"]] == ["prometheus"]
    # What the issue asks the dashboard to show, each by its metric.
    exprs = " ".join(e for _, e in queries())
    for metric in ("saga_transitions_total", "saga_step_latency_seconds_bucket", "saga_timeouts_fired_total",
                   "saga_dead_letters_total", "saga_snapshot_lag_records", "saga_outbound_events_waiting",
                   "saga_assigned_partitions"):
        assert metric in exprs, metric


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the Prometheus server is missing: run `make test` (stack/prometheus.sh installs it)")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: list[str]) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "saga-orchestrator", "static_configs": [{"targets": targets}]}],
        }))
        log = open(tmp_path / "prometheus.log", "wb")
        procs.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        log.close()
        return f"http://127.0.0.1:{port}"

    yield str(tmp_path / "prometheus.log"), start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})) as r:
        return dict(await r.json())


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.3, no_reply_alliance=0.3)], ids=["mixed"])
async def test_every_dashboard_query_returns_data_from_a_real_worker(  # type: ignore[no-untyped-def]
        spawn, participants, taps, behaviour, prometheus_server, names) -> None:
    worker: Worker = spawn(env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": "1", "SAGA_MAX_ATTEMPTS": "1",
                                "DEADLINE_TICK_S": "0.1"})
    await worker.wait_ready(timeout=60)
    log_path, start = prometheus_server
    base = start([f"127.0.0.1:{worker.port}"])
    await publish_partners(participants, 20)
    await participants.publish(names.partner_events, b"not json at all")  # a dead letter
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 20, 90, "20 sagas to end")
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        missing = queries()
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(1)
            still = []
            for name, expr in missing:
                answer = await query(http, base, expr)
                assert answer["status"] == "success", (name, expr, answer)  # it parses and runs
                if not answer["data"]["result"]:
                    still.append((name, expr))
            missing = still
        log_tail = Path(log_path).read_bytes()[-2000:].decode(errors="replace") if missing else ""  # noqa: ASYNC240
        assert not missing, f"no data for {missing}; prometheus log: {log_tail}"
        up = await query(http, base, 'up{job="saga-orchestrator"}')
        assert [r["value"][1] for r in up["data"]["result"]] == ["1"]
        # The figures mean what the panels say: 20 sagas started, each ended once.
        started = await query(http, base, 'max(saga_transitions_total{to="started"})')
        assert float(started["data"]["result"][0]["value"][1]) == 20
