#!/usr/bin/env bash
# Make sure Debian's Chromium is installed (the dashboard's browser test drives it headless).
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [[ "$(id -u)" -ne 0 ]]; then
    echo "setup: ERROR: chromium is missing (needed by the dashboard test): sudo apt-get install -y chromium" >&2
    exit 1
fi
echo "setup: installing Chromium (Debian package chromium, for the dashboard's browser test)" >&2
mkdir -p "${STACK_DIR:-.stack}/logs"
log="${STACK_DIR:-.stack}/logs/chromium-install.log"
{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } >"$log" 2>&1 \
    || { tail -n 5 "$log" >&2; echo "setup: ERROR: apt-get install chromium failed; see $log" >&2; exit 1; }
