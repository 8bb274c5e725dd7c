#!/usr/bin/env bash
# Install Debian's Prometheus server when it is missing (tests/integration/test_prometheus.py
# runs the real server against a worker). Nothing is started: the test runs its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOGS="${STACK_DIR:-$ROOT/.stack}/logs"
if command -v prometheus >/dev/null 2>&1; then exit 0; fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "prometheus: ERROR: the Prometheus server is missing. Install it: sudo apt-get install -y prometheus" >&2
    exit 1
fi
mkdir -p "$LOGS"
echo "prometheus: installing Debian's prometheus package"
# The package would start its own server (port 9090) where no systemd runs: forbid that.
policy=/usr/sbin/policy-rc.d
had_policy=0; [[ -e "$policy" ]] && had_policy=1
[[ $had_policy == 1 ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; }
status=0
{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } \
    >"$LOGS/prometheus-install.log" 2>&1 || status=$?
[[ $had_policy == 1 ]] || rm -f "$policy"
if [[ $status -ne 0 ]]; then
    tail -n 20 "$LOGS/prometheus-install.log" >&2
    echo "prometheus: ERROR: apt-get install prometheus failed; see $LOGS/prometheus-install.log" >&2
    exit 1
fi
command -v prometheus >/dev/null 2>&1 || { echo "prometheus: ERROR: installed, but no prometheus on PATH" >&2; exit 1; }
