#!/usr/bin/env python3
"""Build the images, run the full compose with 3 workers, kill one mid-run, check every saga.

1. Starts a Docker engine when none answers (stack/docker.sh up: as root it installs Debian's
   docker.io, docker-compose and mmdebstrap when missing), and stops it again at the end.
2. Builds every image here (stack/images/build.sh, `make images`): no registry is needed.
3. Brings up docker-compose.yml under its own project name, on free host ports: Kafka, Pulsar,
   PostgreSQL, 3 orchestrator containers sharing the partitions, the participant simulators
   (some partners and alliances failing, some alianzas silent, so timeouts compensate too).
4. Waits until every worker answers /ready (joined the group, partitions assigned and
   recovered), checks that each refuses a call without the run's OPERATOR_TOKEN (generated
   for the run, given to the containers, sent with every call), then starts 200 sagas over
   HTTP at 20 a second; when half are started, kills one orchestrator container (SIGKILL)
   under load; the other two must take its partitions over and finish its sagas.
5. Checks that every saga ended with the status the simulators' choices call for
   (scripts/test_saga_integration.py), then tears the deployment down, volumes included.

    python scripts/test_docker_build.py [--sagas 200] [--rate 20] [--workers 3] [--keep] [--early]

--early: start the load as soon as the workers answer /health, every saga at once, so that the
kill lands while the consumer group is still forming (a harsher variant, not CI's).

Exit code 0 when every saga ended right; 1 otherwise; 2 when the set-up failed. Standard
library only. Timings are printed for information; only outcomes decide the result.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import test_saga_integration as saga  # noqa: E402  (its sibling; standard library only)

PROJECT = "saga-dockertest"
#: The simulators' behaviour in this run, given to the compose file and to the checks.
SIM = saga.Simulated(fail_partner=0.05, fail_alliance=0.1, no_reply_alliance=0.05, fail_revert=0.0)
#: This run's operator token: the containers' OPERATOR_TOKEN, sent with every API call.
TOKEN = os.environ.get("OPERATOR_TOKEN") or secrets.token_urlsafe(32)


def sh(*cmd: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, check=check, text=True)


def out(*cmd: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(cmd, cwd=ROOT, env=env, check=True, text=True, capture_output=True).stdout


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def compose_env(workers: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "COMPOSE_PROJECT": PROJECT, "WORKERS": str(workers), "OPERATOR_TOKEN": TOKEN,
        # Free host ports: nothing clashes with a local stack or another deployment.
        "KAFKA_PUBLISH": "127.0.0.1:", "PULSAR_PUBLISH": "127.0.0.1:", "PULSAR_WEB_PUBLISH": "127.0.0.1:",
        "PG_PUBLISH": "127.0.0.1:", "WEB_PUBLISH": "127.0.0.1:",
        "SIM_LATENCY_S": "0.02", "SIM_FAIL_PARTNER": str(SIM.fail_partner),
        "SIM_FAIL_ALLIANCE": str(SIM.fail_alliance), "SIM_NO_REPLY_ALLIANCE": str(SIM.no_reply_alliance),
        "SIM_FAIL_REVERT": str(SIM.fail_revert),
        # Silent alianzas time out within the run: 5 s a try (3 tries), then undone.
        "SAGA_CREATE_ALLIANCE_TIMEOUT_S": "5", "SAGA_REPLY_TIMEOUT_S": "10",
    })
    return env


def release_mismatch(env: dict[str, str], urls: list[str]) -> str | None:
    """The image's version label and every worker's /health must name pyproject.toml's
    version; None when they do."""
    want = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
                if line.startswith("version = "))
    image = env.get("ORCHESTRATOR_IMAGE", "saga-orchestrator:latest")
    label = out("docker", "image", "inspect", "-f",
                '{{ index .Config.Labels "org.opencontainers.image.version" }}', image).strip()
    if label != want:
        return f"image {image} is labelled version {label!r}, pyproject.toml says {want!r}"
    for url in urls:
        status, health = saga.Workers([url]).request("GET", "/health")
        if status != 200 or not isinstance(health, dict) or health.get("version") != want:
            return f"{url}/health answered {status} {health!r}, expected version {want!r}"
    return None


def worker_urls(env: dict[str, str]) -> dict[str, str]:
    """container name -> http://127.0.0.1:PORT of each running orchestrator container."""
    lines = out(str(ROOT / "stack/deploy.sh"), "workers", PROJECT, env=env).split("\n")
    return {name: url for url, name in (ln.split() for ln in lines if ln.strip())}


def keep_evidence(workers: saga.Workers, run: saga.Run) -> None:
    """On failure, before teardown: every container's log and the unended sagas' states."""
    where = ROOT / ".stack" / "logs" / f"dockertest-{time.strftime('%Y%m%dT%H%M%S')}"
    where.mkdir(parents=True, exist_ok=True)
    names = out("docker", "ps", "-a", "--format", "{{.Names}}", "--filter",
                f"label=com.docker.compose.project={PROJECT}").split()
    for name in names:
        logs = subprocess.run(["docker", "logs", "-t", name], capture_output=True, text=True)
        (where / f"{name}.log").write_text(logs.stdout + logs.stderr)
    pending = [s for s in run.started if s not in run.ended]
    with (where / "not-ended.txt").open("w") as f:
        for saga_id in pending:
            status, answer = workers.request("GET", f"/api/v1/saga/status/{saga_id}")
            f.write(f"{saga_id} {status} {json.dumps(answer)}\n")
    print(f"test_docker_build: evidence kept in {where} ({len(names)} container logs, "
          f"{len(pending)} unended sagas' states)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sagas", type=int, default=200)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--rate", type=float, default=20.0, help="sagas started a second")
    p.add_argument("--early", action="store_true",
                   help="no wait for /ready, sagas all at once: the kill lands during the group's forming")
    p.add_argument("--within", type=float, default=300.0, help="seconds for every saga to end")
    p.add_argument("--keep", action="store_true", help="leave the deployment (and engine) running")
    args = p.parse_args()
    if args.workers < 2:
        p.error("--workers must be at least 2: one is killed")
    started_engine = not engine_answers()
    env = compose_env(args.workers)
    t0 = time.monotonic()
    try:
        try:
            sh(str(ROOT / "stack/docker.sh"), "up")
            sh(str(ROOT / "stack/images/build.sh"))
            t_images = time.monotonic()
            sh(str(ROOT / "stack/deploy.sh"), "full-up", env=env)
            t_up = time.monotonic()
        except subprocess.CalledProcessError as exc:
            print(f"test_docker_build: set-up failed: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
            return 2
        urls = worker_urls(env)
        if len(urls) != args.workers:
            print(f"test_docker_build: {len(urls)} orchestrator containers answer, expected {args.workers}")
            return 2
        wrong = release_mismatch(env, list(urls.values()))
        if wrong:
            print(f"test_docker_build: {wrong}")
            return 1
        victim = sorted(urls)[1]
        workers = saga.Workers(list(urls.values()), token=TOKEN)
        not_ready = [] if args.early else workers.wait_all_ready(180)
        if not_ready:
            print(f"test_docker_build: not ready after 180 s: {', '.join(not_ready)}")
            keep_evidence(workers, saga.Run())
            return 2
        # Closed to strangers: a call without the token is refused by every container.
        open_to_strangers = [u for u in urls.values()
                             if saga.Workers([u]).request("GET", "/api/v1/sagas/counts")[0] != 401]
        if open_to_strangers:
            print("test_docker_build: answered without a token (401 expected): "
                  + ", ".join(open_to_strangers))
            return 1
        killed = threading.Event()

        def maybe_kill(n_started: int) -> None:
            if n_started >= args.sagas // 2 and not killed.is_set():
                killed.set()
                threading.Thread(target=sh, args=("docker", "kill", victim)).start()

        print(f"starting {args.sagas} sagas over {len(urls)} workers; killing {victim} halfway", flush=True)
        t_run = time.monotonic()
        run = saga.start_sagas(workers, args.sagas, f"dockertest-{int(time.time())}",
                               rate=None if args.early else args.rate, on_started=maybe_kill)
        saga.wait_ended(workers, run, args.within)
        t_end = time.monotonic()
        alive = out("docker", "ps", "-q", "--filter", f"name={victim}").strip()
        print(f"killed {victim} (SIGKILL) mid-run: {'restarted by Docker' if alive else 'stayed down'}")
        ok = killed.is_set() and saga.report(run, SIM)
        if not ok:
            keep_evidence(workers, run)
        print(f"images {t_images - t0:.0f} s, deployment up {t_up - t_images:.0f} s, "
              f"sagas {t_end - t_run:.1f} s (informational)")
        print(f"test_docker_build: {'PASSED' if ok else 'FAILED'}: {len(run.ended)} of {args.sagas} sagas "
              f"ended, {args.workers} workers, one killed")
        return 0 if ok else 1
    finally:
        if not args.keep:
            sh(str(ROOT / "stack/deploy.sh"), "full-down", env={**env, "DATA": "drop"}, check=False)
            if started_engine:
                sh(str(ROOT / "stack/docker.sh"), "down", check=False)


if __name__ == "__main__":
    sys.exit(main())
