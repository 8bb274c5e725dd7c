#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver (chromium-driver) are installed: the
# dashboard's browser tests drive it headless through Selenium.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
if [[ "$(id -u)" -ne 0 ]]; then
    echo "setup: ERROR: chromium or chromium-driver is missing (needed by the dashboard tests): sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
echo "setup: installing Chromium and its driver (Debian packages chromium, chromium-driver, for the dashboard tests)" >&2
mkdir -p "${STACK_DIR:-.stack}/logs"
log="${STACK_DIR:-.stack}/logs/chromium-install.log"
{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; } >"$log" 2>&1 \
    || { tail -n 5 "$log" >&2; echo "setup: ERROR: apt-get install chromium chromium-driver failed; see $log" >&2; exit 1; }
