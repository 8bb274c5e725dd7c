#!/usr/bin/env bash
# The container deployments (README, "Running"): the make targets call this.
#
#   stack/deploy.sh full-up|full-down       docker-compose.yml, WORKERS (3) orchestrator containers
#                                           and the participant simulators
#   stack/deploy.sh simple-up|simple-down   docker-compose.yml without simulators, WORKERS (1)
#   stack/deploy.sh shared-up|shared-down   docker-compose.shared-pulsar.yml: joined to a Pulsar
#                                           already running (BROKER_URL on PULSAR_NETWORK)
#   stack/deploy.sh infra-up|infra-down     docker-compose.dev.yml: Kafka, Pulsar, PostgreSQL only
#   stack/deploy.sh workers [PROJECT]       the orchestrator containers' web addresses
#   stack/deploy.sh status                  the deployments' containers (when an engine answers)
#   stack/deploy.sh logs full|shared|dev    follow a deployment's logs
#
# Every *-up builds what it needs, starts the containers and waits, bounded, until every
# orchestrator container answers /health; it exits non-zero, with the last log lines, if one
# does not. The orchestrator containers get OPERATOR_TOKEN, yours or the local one in
# .stack/api-token (stack/token.sh), and the HTTP API's other token settings when set.
# *-down stops and removes the containers and keeps the data volumes (DATA=drop
# deletes them too). Images: .env (written by `make images`), else the official ones.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMPOSE=("$ROOT/stack/docker.sh" compose)
# The release an image is built from: its labels (org.opencontainers.image.version and
# .revision), and the commit /health and saga_build_info show.
export SAGA_VERSION="${SAGA_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}"
export SAGA_COMMIT="${SAGA_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
PROJECT="${COMPOSE_PROJECT:-saga-orchestrator}"
WAIT_SECONDS="${WAIT_SECONDS:-180}"

say() { printf '%s\n' "deploy: $*"; }
die() { printf '%s\n' "deploy: ERROR: $*" >&2; exit 1; }

if [[ "${1:-}" == status ]]; then
    docker info >/dev/null 2>&1 || { printf '  %-9s %s\n' docker "no engine answers (make docker-up)"; exit 0; }
    lines="$(docker ps -a --filter "label=com.docker.compose.project" \
        --format '{{.Label "com.docker.compose.project"}}\t{{.Names}}\t{{.Status}}\t{{.Ports}}' | grep "^$PROJECT" || true)"
    if [[ -z "$lines" ]]; then printf '  %-9s %s\n' docker "engine up, no deployment running"; exit 0; fi
    printf '  %-9s\n' containers; printf '%s\n' "$lines" | sort | awk -F'\t' '{printf "    %-40s %-28s %s\n", $2, $3, $4}'
    exit 0
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers: run make docker-up first (it installs and starts one)"
"$ROOT/stack/images/certs.sh"

full() { "${COMPOSE[@]}" -p "$PROJECT" --profile simulators ${PROFILES:-} -f docker-compose.yml "$@"; }
shared() { "${COMPOSE[@]}" -p "$PROJECT-shared" -f docker-compose.shared-pulsar.yml "$@"; }
infra() { "${COMPOSE[@]}" -p "$PROJECT-dev" -f docker-compose.dev.yml "$@"; }

workers() { # project: one http://127.0.0.1:PORT per running orchestrator container
    local c port
    for c in $(docker ps -q --filter "label=com.docker.compose.project=$1" \
                              --filter "label=com.docker.compose.service=orchestrator"); do
        port="$(docker port "$c" 6066/tcp | head -1 | sed 's/.*://')"
        [[ -n "$port" ]] && printf 'http://127.0.0.1:%s %s\n' "$port" "$(docker inspect -f '{{.Name}}' "$c" | tr -d /)"
    done
}

wait_healthy() { # project expected-count
    local deadline=$((SECONDS + WAIT_SECONDS)) up=0 url name
    while ((SECONDS < deadline)); do
        up=0
        while read -r url name; do
            [[ -n "$url" ]] && curl -fsS --max-time 2 "$url/health" >/dev/null 2>&1 && up=$((up + 1))
        done < <(workers "$1")
        ((up >= $2)) && break
        sleep 2
    done
    if ((up < $2)); then
        for c in $(docker ps -aq --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=orchestrator"); do
            echo "--- $(docker inspect -f '{{.Name}}' "$c")" >&2; docker logs --tail 15 "$c" >&2 2>&1 || true
        done
        die "$up of $2 orchestrator containers answer /health after ${WAIT_SECONDS}s (logs above)"
    fi
    say "$up orchestrator worker(s) up; HTTP API:"
    workers "$1" | sed 's/^/  /'
    local first; first="$(workers "$1" | sed -n '1s/ .*//p')"  # sed reads it all: no SIGPIPE
    say "API token (every role): $TOKEN_FROM   e.g. curl -H \"Authorization: Bearer $TOKEN_FROM\" $first/api/v1/sagas"
    local c
    for c in prometheus grafana; do
        local id; id="$(docker ps -q --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=$c")"
        [[ -n "$id" ]] && say "$c: http://$(docker port "$id" | head -1 | sed 's/.*-> //')"
    done
    return 0
}

images_of() { # file: "service image" lines of a compose file
    "${COMPOSE[@]}" -f "$1" config 2>/dev/null \
        | awk '/^  [a-z0-9_-]+:$/ {svc=$1; sub(":", "", svc)} /^    image: / {print svc, $2}'
}

have_image() { # image: present, or pulled now
    docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1
}

MONITORING=(prometheus grafana)

ensure_images() { # file...: pull the infrastructure images, or build stand-ins when none can be pulled
    local img svc f missing=()
    for f in "$@"; do
        while read -r svc img; do
            [[ " ${MONITORING[*]} " == *" $svc "* ]] && continue  # optional: see monitoring()
            [[ "$img" == "${ORCHESTRATOR_IMAGE:-saga-orchestrator:latest}" ]] && continue
            docker image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
        done < <(images_of "$f")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    for img in "${missing[@]}"; do
        if ! docker pull -q "$img" >/dev/null 2>&1; then
            say "cannot pull $img (no registry access?): building stand-ins from Debian packages and Maven Central (make images)"
            "$ROOT/stack/images/build.sh"
            return 0
        fi
    done
}

monitoring() { # the --profile arguments of the monitoring services whose image is here or pullable
    local svc img
    while read -r svc img; do
        [[ " ${MONITORING[*]} " == *" $svc "* ]] || continue
        if have_image "$img"; then printf -- '--profile %s ' "$svc"
        else say "$svc left out: its image $img is not here and cannot be pulled (no registry access?)" >&2; fi
    done < <(images_of docker-compose.yml)
}

down_args() { if [[ "${DATA:-keep}" == drop ]]; then echo "down -v --remove-orphans"; else echo "down --remove-orphans"; fi; }

shared_probe() {
    local net="${PULSAR_NETWORK:-pulsar-network}" url="${BROKER_URL:-pulsar://pulsar:6650}"
    docker network inspect "$net" >/dev/null 2>&1 || { say "creating Docker network $net"; docker network create "$net" >/dev/null; }
    shared build orchestrator >/dev/null
    docker run --rm --network "$net" --add-host host.docker.internal:host-gateway --entrypoint python \
        "${ORCHESTRATOR_IMAGE:-saga-orchestrator:latest}" -c '
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
try:
    socket.create_connection((u.hostname, u.port or 6650), timeout=5).close()
except OSError as e:
    sys.exit(f"deploy: ERROR: no Pulsar answers at {sys.argv[1]} on Docker network {sys.argv[2]} ({e}): "
             "start it first, or set BROKER_URL and PULSAR_NETWORK (README, Running)")
' "$url" "$net"
    say "Pulsar answers at $url on network $net"
}

api_token() { # the workers' OPERATOR_TOKEN: yours, else the local one (stack/token.sh)
    if [[ -n "${OPERATOR_TOKEN:-}" ]]; then
        TOKEN_FROM='$OPERATOR_TOKEN'
    else
        TOKEN_FROM="\$(cat ${STACK_DIR:-$ROOT/.stack}/api-token)"
    fi
    OPERATOR_TOKEN="$("$ROOT/stack/token.sh")"
    export OPERATOR_TOKEN
}
TOKEN_FROM='$OPERATOR_TOKEN'
case "${1:-}" in
    full-up|simple-up|shared-up) api_token ;;
esac

case "${1:-}" in
    full-up) ensure_images docker-compose.yml; PROFILES="$(monitoring)"; full up -d --build --scale "orchestrator=${WORKERS:-3}"; wait_healthy "$PROJECT" "${WORKERS:-3}" ;;
    simple-up) ensure_images docker-compose.yml; "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml up -d --build --scale "orchestrator=${WORKERS:-1}"
               wait_healthy "$PROJECT" "${WORKERS:-1}" ;;
    full-down|simple-down) PROFILES="--profile prometheus --profile grafana" full $(down_args) ;;
    shared-up) ensure_images docker-compose.shared-pulsar.yml; shared_probe; shared up -d --build --scale "orchestrator=${WORKERS:-1}"; wait_healthy "$PROJECT-shared" "${WORKERS:-1}" ;;
    shared-down) shared $(down_args) ;;
    infra-up) ensure_images docker-compose.dev.yml; infra up -d; say "Kafka 127.0.0.1:9092, Pulsar 127.0.0.1:6650, PostgreSQL 127.0.0.1:5432 (healthchecks: docker ps)" ;;
    infra-down) infra $(down_args) ;;
    workers) workers "${2:-$PROJECT}" ;;
    logs) case "${2:-full}" in full|simple) full logs -f --tail 50 ;; shared) shared logs -f --tail 50 ;;
              dev) infra logs -f --tail 50 ;; *) die "logs: full, shared or dev, not '$2'" ;; esac ;;
    *) die "usage: stack/deploy.sh full-up|full-down|simple-up|simple-down|shared-up|shared-down|infra-up|infra-down|workers [PROJECT]|status|logs full|shared|dev" ;;
esac
