"""The Helm chart (deploy/helm/saga-orchestrator) as `helm template` renders it: a StatefulSet
of workers with a volume each for RocksDB, probes on /ready and /health, non-root and
read-only, resources, the secrets as files, a PodDisruptionBudget, replicas bounded by the
partitions, the mirror on its own when asked. Helm is built by `make test` (stack/helm.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "saga-orchestrator"
HELM = ROOT / ".stack" / "bin" / "helm"


def _render(*sets: str) -> list[dict[str, Any]]:
    if not HELM.exists():
        pytest.fail(f"Helm is missing at {HELM}: run `make test` or stack/helm.sh install")
    args = [str(HELM), "template", "saga", str(CHART)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, [(d["kind"], d["metadata"]["name"]) for d in docs]
    return found[0]


def test_the_workers_are_a_statefulset_with_a_volume_probes_and_limits() -> None:
    docs = _render()
    sts = _one(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["updateStrategy"]["type"] == "RollingUpdate"
    claim, = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pod = spec["template"]["spec"]
    worker, = pod["containers"]
    assert {"name": "data", "mountPath": "/data"} in worker["volumeMounts"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in worker["env"]}
    assert env["DATADIR"] == "/data" and env["SNAPSHOT_MIRROR"] == "process"
    assert env["WEB_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    assert worker["startupProbe"]["httpGet"]["path"] == "/health"
    assert worker["resources"]["requests"]["cpu"] and worker["resources"]["limits"]["memory"]
    assert sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_it_runs_as_no_root_with_nothing_to_gain() -> None:
    pod = _one(_render(), "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    ctx = pod["containers"][0]["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]


def test_secrets_are_files_never_values() -> None:
    pod = _one(_render("secrets.files.KAFKA_SASL_PASSWORD_FILE=kafka-sasl-password",
                       "tls.secretName=saga-ca"), "StatefulSet")["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["OPERATOR_TOKEN_FILE"] == "/run/secrets/saga/operator-token"
    assert env["KAFKA_SASL_PASSWORD_FILE"] == "/run/secrets/saga/kafka-sasl-password"
    assert "API_READ_TOKENS_FILE" not in env  # "" in the values: not used
    secret_named = [n for n in env if any(w in n for w in ("PASSWORD", "TOKEN", "KEYS"))]
    assert all(n.endswith("_FILE") for n in secret_named), secret_named
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "saga-orchestrator"
    assert volumes["tls"]["secret"]["secretName"] == "saga-ca"
    mounts = {m["name"]: m for m in worker["volumeMounts"]}
    assert mounts["secrets"]["readOnly"] and mounts["tls"]["mountPath"] == "/run/tls"


def test_a_disruption_takes_one_worker_at_a_time() -> None:
    docs = _render()
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pods = _one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pods.items()
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert services["saga-workers"]["spec"]["clusterIP"] == "None"
    assert services["saga"]["spec"]["ports"][0]["port"] == 6066


def test_replicas_are_bounded_by_the_partitions() -> None:
    assert _one(_render("replicas=8", "kafka.partitions=8"), "StatefulSet")["spec"]["replicas"] == 8
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _render("replicas=9", "kafka.partitions=8")
    assert "replicas (9) > kafka.partitions (8)" in refused.value.stderr


def test_the_mirror_runs_on_its_own_when_asked() -> None:
    assert not [d for d in _render() if d["kind"] == "Deployment"]
    docs = _render("mirror.separate=true")
    mirror = _one(docs, "Deployment")
    container, = mirror["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["python", "-m", "snapshots", "mirror"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["resources"]["limits"]
    worker_env = {e["name"]: e.get("value") for e in
                  _one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert worker_env["SNAPSHOT_MIRROR"] == "off"
