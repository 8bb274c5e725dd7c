#!/usr/bin/env bash
# The Docker engine and tools the container targets need (make images, full-up, ...).
#
#   stack/docker.sh up       install what is missing (as root: Debian's docker.io, docker-compose,
#                            mmdebstrap) and start dockerd unless an engine already answers
#   stack/docker.sh down     stop the dockerd this script started (an engine it found running
#                            is left alone)
#   stack/docker.sh compose ARGS...   `docker compose` (v2) when present, else `docker-compose`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
PIDFILE="$STACK_DIR/run/dockerd.pid"
LOG="$STACK_DIR/logs/dockerd.log"

say() { printf '%s\n' "docker: $*"; }
die() { printf '%s\n' "docker: ERROR: $*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

apt_install() { # package...
    [[ "$(id -u)" -eq 0 ]] || die "missing: $*. Install them: sudo apt-get install -y $*"
    say "installing $* (Debian packages)"
    mkdir -p "$STACK_DIR/logs"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } \
        >"$STACK_DIR/logs/docker-install.log" 2>&1 \
        || { tail -n 20 "$STACK_DIR/logs/docker-install.log" >&2; die "apt-get install $* failed; see $STACK_DIR/logs/docker-install.log"; }
}

has_compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }

up() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || engine_answers || missing+=(docker.io)
    has_compose || missing+=(docker-compose)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
    if engine_answers; then say "engine up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"; return 0; fi
    [[ "$(id -u)" -eq 0 ]] || die "no Docker engine answers and only root can start one here: sudo dockerd &"
    mkdir -p "$STACK_DIR/run" "$STACK_DIR/logs"
    nohup dockerd >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local i
    for ((i = 0; i < 120; i++)); do
        engine_answers && { say "engine up: dockerd $(docker version --format '{{.Server.Version}}'), pid $(cat "$PIDFILE"), log $LOG"; return 0; }
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -n 20 "$LOG" >&2; die "dockerd exited during start-up; see $LOG"; }
        sleep 0.5
    done
    die "dockerd did not answer within 60 s; see $LOG"
}

down() {
    if [[ ! -f "$PIDFILE" ]]; then say "no dockerd started by this project"; return 0; fi
    local pid; pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        local i
        for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        say "dockerd stopped (pid $pid)"
    fi
    rm -f "$PIDFILE"
}

compose() {
    if docker compose version >/dev/null 2>&1; then exec docker compose "$@"; fi
    command -v docker-compose >/dev/null 2>&1 || die "neither 'docker compose' nor 'docker-compose' is installed: run make docker-up"
    exec docker-compose "$@"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    compose) shift; compose "$@" ;;
    *) die "usage: stack/docker.sh up|down|compose ARGS..." ;;
esac
