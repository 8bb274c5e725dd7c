#!/usr/bin/env bash
# `make images`: the images the compose files need, built on this machine, for machines that
# cannot pull from Docker Hub (this project's CI among them).
#
# - bases from Debian packages with mmdebstrap (it reads the machine's own apt sources):
#   saga-stack/python-base (python3), saga-stack/java-base (OpenJDK 17), saga-stack/postgres-base,
#   saga-stack/prometheus-base;
# - stand-ins for the official images: saga-stack/kafka and saga-stack/pulsar from the Maven
#   Central jars the local stack already fetches (stack/kafka, stack/pulsar-apache),
#   saga-stack/postgres from Debian's PostgreSQL 15, saga-stack/prometheus from Debian's
#   Prometheus (Grafana has no Debian package: no stand-in, its service needs Docker Hub);
# - the orchestrator image (Dockerfile) on saga-stack/python-base.
# It then writes .env, which docker compose reads, naming these images; delete .env to go
# back to the official ones. A base is built once (REBUILD_BASES=1 builds it again).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
CTX="$STACK_DIR/images"
LOGS="$STACK_DIR/logs"
SUITE="${DEBIAN_SUITE:-bookworm}"

say() { printf '%s\n' "images: $*"; }
die() { printf '%s\n' "images: ERROR: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers: run make docker-up first"
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is missing: run make docker-up (it installs it) or apt-get install -y mmdebstrap"
mkdir -p "$CTX" "$LOGS"

base() { # name packages
    local tag="saga-stack/$1:$SUITE"
    if [[ "${REBUILD_BASES:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
        say "$tag present"; return 0
    fi
    say "building $tag from Debian packages ($2)"
    mmdebstrap --variant=apt --include="$2" "$SUITE" - 2>"$LOGS/mmdebstrap-$1.log" \
        | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' - "$tag" >/dev/null \
        || { tail -n 20 "$LOGS/mmdebstrap-$1.log" >&2; die "mmdebstrap for $tag failed; see $LOGS/mmdebstrap-$1.log"; }
}

build() { # tag context [docker build args...]
    local tag=$1 ctx=$2; shift 2
    say "building $tag"
    docker build -q -t "$tag" "$@" "$ctx" >"$LOGS/image-${tag//[:\/]/_}.log" 2>&1 \
        || { tail -n 30 "$LOGS/image-${tag//[:\/]/_}.log" >&2; die "building $tag failed; see $LOGS/image-${tag//[:\/]/_}.log"; }
}

version() { sed -n "s/.*<$1.version>\(.*\)<\/$1.version>.*/\1/p" "$2"; }

base python-base python3,python3-venv,ca-certificates
base java-base openjdk-17-jre-headless,ca-certificates,curl
base postgres-base postgresql,ca-certificates
base prometheus-base prometheus,ca-certificates

"$ROOT/stack/stack.sh" jars >/dev/null
KAFKA_VERSION="$(version kafka "$ROOT/stack/kafka/pom.xml")"
PULSAR_VERSION="$(version pulsar "$ROOT/stack/pulsar-apache/pom.xml")"

rm -rf "$CTX/kafka" "$CTX/pulsar" "$CTX/postgres"
mkdir -p "$CTX/kafka" "$CTX/pulsar" "$CTX/postgres"
cp -r "$ROOT/stack/images/kafka/." "$CTX/kafka/"
cp "$ROOT/stack/kafka/log4j2.yaml" "$CTX/kafka/"
cp -rl "$STACK_DIR/cache/kafka-lib" "$CTX/kafka/libs" 2>/dev/null || cp -r "$STACK_DIR/cache/kafka-lib" "$CTX/kafka/libs"
cp -r "$ROOT/stack/images/pulsar/." "$CTX/pulsar/"
cp "$ROOT/stack/pulsar-apache/log4j2.xml" "$CTX/pulsar/"
# The local stack's broker settings, listening on every interface. advertisedAddress stays
# 127.0.0.1: the in-process bookie registers under it, so a new container (a new IP) finds
# the ledgers the last one wrote; `bin/pulsar standalone --advertised-address NAME` sets
# the broker's own advertised name (docker-compose.yml: pulsar).
sed -e 's/^bindAddress=.*/bindAddress=0.0.0.0/' \
    -e 's/@PULSAR_PORT@/6650/' -e 's/@PULSAR_WEB_PORT@/8080/' \
    "$ROOT/stack/pulsar-apache/standalone.conf" >"$CTX/pulsar/standalone.conf"
cp -rl "$STACK_DIR/cache/pulsar-lib" "$CTX/pulsar/lib" 2>/dev/null || cp -r "$STACK_DIR/cache/pulsar-lib" "$CTX/pulsar/lib"
cp -r "$ROOT/stack/images/postgres/." "$CTX/postgres/"

build "saga-stack/kafka:$KAFKA_VERSION" "$CTX/kafka" --build-arg "BASE_IMAGE=saga-stack/java-base:$SUITE"
build "saga-stack/pulsar:$PULSAR_VERSION" "$CTX/pulsar" --build-arg "BASE_IMAGE=saga-stack/java-base:$SUITE"
build "saga-stack/postgres:15" "$CTX/postgres" --build-arg "BASE_IMAGE=saga-stack/postgres-base:$SUITE"
build "saga-stack/prometheus:debian" "$ROOT/stack/images/prometheus" --build-arg "BASE_IMAGE=saga-stack/prometheus-base:$SUITE"

"$ROOT/stack/images/certs.sh"
build "saga-orchestrator:latest" "$ROOT" --build-arg "BASE_IMAGE=saga-stack/python-base:$SUITE"

cat >"$ROOT/.env" <<ENV
# Written by \`make images\` ($(date -u +%FT%TZ)): the compose files use the images built on
# this machine instead of the official ones. Delete this file to use the official images.
KAFKA_IMAGE=saga-stack/kafka:$KAFKA_VERSION
PULSAR_IMAGE=saga-stack/pulsar:$PULSAR_VERSION
POSTGRES_IMAGE=saga-stack/postgres:15
PROMETHEUS_IMAGE=saga-stack/prometheus:debian
BASE_IMAGE=saga-stack/python-base:$SUITE
ENV
say "done: $(grep -c _IMAGE= "$ROOT/.env") images named in .env"
