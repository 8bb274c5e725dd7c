"""docker-compose.yml cannot run here (no Docker engine): check it says what the code reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_the_stack_and_the_orchestrator() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "pulsar", "postgres", "orchestrator"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["pulsar"]["image"].startswith("apachepulsar/pulsar:")
    assert "standalone" in services["pulsar"]["command"]
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "saga_db"


def test_compose_sets_only_variables_the_orchestrator_reads() -> None:
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["orchestrator"]["environment"]
    known = {f.alias for f in Settings.model_fields.values()}
    assert set(env) <= known
    settings = Settings.model_validate(env)  # every value passes the worker's own validation
    assert settings.broker_url.startswith("pulsar://")
