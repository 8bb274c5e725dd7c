"""The compose files say what the code reads (the Docker runs themselves are
scripts/test_docker_build.py, run by CI): services, official image defaults, the variables
each container gets, and the scripts' view of the simulators."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.harness import expected_end
from runtime.settings import Settings
from simulators.participants import Behaviour, _share

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import test_saga_integration as integration  # noqa: E402

_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())  # type: ignore[no-any-return]


def defaults(value: object) -> str:
    """A compose value with every ${VAR:-default} replaced by its default."""
    return _VAR.sub(lambda m: m.group(2) or "", str(value))


def resolved(file: str, service: str) -> dict[str, Any]:
    """A service with `extends` applied (mappings merged, the extending file winning)."""
    svc = dict(load(file)["services"][service])
    ext = svc.pop("extends", None)
    if ext is None:
        return svc
    base = resolved(str((ROOT / file).parent.relative_to(ROOT) / ext["file"]), ext["service"])
    merged = {**base, **svc}
    for key in ("environment",):
        if key in base or key in svc:
            merged[key] = {**base.get(key, {}), **svc.get(key, {})}
    return merged


@pytest.mark.parametrize(("file", "services"), [
    ("docker-compose.dev.yml", {"kafka", "pulsar", "postgres"}),
    ("docker-compose.yml", {"kafka", "pulsar", "postgres", "orchestrator", "simulators", "prometheus",
                            "grafana"}),
    ("docker-compose.shared-pulsar.yml", {"kafka", "postgres", "orchestrator"}),
])
def test_each_option_has_its_services(file: str, services: set[str]) -> None:
    assert set(load(file)["services"]) == services


def test_images_default_to_the_official_ones_and_are_variables() -> None:
    svc = load("docker-compose.dev.yml")["services"]
    for name, var, official in (("kafka", "KAFKA_IMAGE", "apache/kafka:"),
                                ("pulsar", "PULSAR_IMAGE", "apachepulsar/pulsar:"),
                                ("postgres", "POSTGRES_IMAGE", "postgres:")):
        assert svc[name]["image"].startswith(f"${{{var}:-{official}")
    orch = resolved("docker-compose.yml", "orchestrator")
    assert orch["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}"
    full = load("docker-compose.yml")["services"]
    assert full["prometheus"]["image"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    assert full["grafana"]["image"].startswith("${GRAFANA_IMAGE:-grafana/grafana:")


def test_monitoring_mounts_the_files_it_needs() -> None:
    full = load("docker-compose.yml")["services"]
    mounts = [m.split(":")[0] for svc in ("prometheus", "grafana") for m in full[svc]["volumes"]]
    for m in mounts:
        if m.startswith("./"):
            assert (ROOT / m).exists(), m
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    sd = prometheus["scrape_configs"][0]["dns_sd_configs"][0]
    assert (sd["names"], sd["port"]) == (["orchestrator"], 6066)


def test_the_full_option_reaches_pulsar_by_the_name_the_broker_advertises() -> None:
    pulsar = resolved("docker-compose.yml", "pulsar")
    assert "--advertised-address pulsar" in pulsar["command"]
    assert defaults(resolved("docker-compose.yml", "orchestrator")["environment"]["BROKER_URL"]) \
        == "pulsar://pulsar:6650"


def test_the_shared_option_joins_an_external_network_and_takes_broker_url() -> None:
    compose = load("docker-compose.shared-pulsar.yml")
    assert compose["networks"]["shared-pulsar"]["external"] is True
    orch = resolved("docker-compose.shared-pulsar.yml", "orchestrator")
    assert orch["environment"]["BROKER_URL"].startswith("${BROKER_URL:-")
    assert "shared-pulsar" in orch["networks"]


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.shared-pulsar.yml"])
def test_orchestrator_gets_only_variables_it_reads_and_they_validate(file: str) -> None:
    env = {k: defaults(v) for k, v in resolved(file, "orchestrator")["environment"].items()}
    known = {f.alias for f in Settings.model_fields.values()}
    assert set(env) <= known
    settings = Settings.model_validate(env)  # every value passes the worker's own validation
    assert settings.kafka_broker_url == "kafka://kafka:29092"
    assert "WEB_HOST" not in env  # each container advertises its own address


def test_simulators_get_only_variables_they_read() -> None:
    env = resolved("docker-compose.yml", "simulators")["environment"]
    # the Pulsar security variables are read by common/security.py for every Pulsar program
    source = "".join((ROOT / f).read_text() for f in ("simulators/participants.py", "common/security.py"))
    for name in env:
        assert f'"{name}"' in source, name


def test_the_scripts_predict_the_simulators_draws() -> None:
    for n in range(200):
        saga_id = str(uuid.uuid5(uuid.NAMESPACE_URL, str(n)))
        for salt in ("fail-partner", "fail-alliance", "no-reply-alliance"):
            assert integration.share(saga_id, salt) == _share(saga_id, salt)


def test_the_scripts_expect_what_the_fault_harness_expects() -> None:
    behaviour = Behaviour(fail_alliance=0.3, no_reply_alliance=0.1)
    sim = integration.Simulated(fail_partner=0.0, fail_alliance=0.3, no_reply_alliance=0.1, fail_revert=0.0)
    as_status = {"SagaCompleted": "completed", "SagaCompensated": "compensated"}
    seen = set()
    for n in range(300):
        saga_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"s{n}"))
        assert sim.expected(saga_id) == {as_status[expected_end(saga_id, behaviour)]}
        seen |= sim.expected(saga_id)
    assert seen == {"completed", "compensated"}


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.shared-pulsar.yml"])
def test_orchestrators_get_the_api_tokens_from_the_deployment_never_a_default_one(file: str) -> None:
    env = resolved(file, "orchestrator")["environment"]
    for var in ("OPERATOR_TOKEN", "API_READ_TOKENS", "API_START_TOKENS", "API_OPERATE_TOKENS"):
        assert env[var] == f"${{{var}:-}}" and env[f"{var}_FILE"] == f"${{{var}_FILE:-}}"
    assert defaults(env["API_AUTH"]) == "token"  # closed unless a token is given
    deploy = (ROOT / "stack" / "deploy.sh").read_text()
    assert "stack/token.sh" in deploy and "full-up|simple-up|shared-up) api_token" in deploy
