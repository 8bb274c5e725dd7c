#!/usr/bin/env bash
# Run uv, installing it from PyPI first when the machine has none.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
if python3 -m uv --version >/dev/null 2>&1; then exec python3 -m uv "$@"; fi
command -v python3 >/dev/null 2>&1 || { echo "setup: ERROR: python3 (3.11) is missing: install it (apt-get install -y python3)" >&2; exit 1; }
echo "setup: installing uv from PyPI (pip install uv)" >&2
python3 -m pip install --quiet --disable-pip-version-check uv >&2 \
    || { echo "setup: ERROR: could not install uv with pip; install it: python3 -m pip install uv" >&2; exit 1; }
exec python3 -m uv "$@"
