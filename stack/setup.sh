#!/usr/bin/env bash
# Check the machine's prerequisites and install the Python environment (uv sync).
# Each missing prerequisite is named in one line with the way to get it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "setup: ERROR: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 (3.11) is missing: apt-get install -y python3"
command -v java >/dev/null 2>&1 || fail "Java is missing (Kafka needs a JDK 17+): apt-get install -y openjdk-17-jdk-headless"
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = \([0-9]*\).*/\1/p')"
[[ "${java_major:-0}" -ge 17 ]] || fail "Java ${java_major:-?} found, Kafka 4 needs 17+: apt-get install -y openjdk-17-jdk-headless"
command -v curl >/dev/null 2>&1 || fail "curl is missing (the stack asks Apache Pulsar whether it is ready): apt-get install -y curl"
command -v mvn >/dev/null 2>&1 || fail "Maven (mvn) is missing (it fetches Kafka's jars): apt-get install -y maven"

cd "$ROOT"
"$ROOT/stack/uv.sh" sync --frozen --quiet || fail "uv sync failed (see above); is PyPI reachable?"
