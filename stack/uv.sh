#!/usr/bin/env bash
# Run uv, installing it from PyPI first when the machine has none.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
if python3 -m uv --version >/dev/null 2>&1; then exec python3 -m uv "$@"; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${STACK_DIR:-$ROOT/.stack}/tools"
if [[ -x "$TOOLS/bin/uv" ]]; then exec "$TOOLS/bin/uv" "$@"; fi
command -v python3 >/dev/null 2>&1 || { echo "setup: ERROR: python3 (3.11) is missing: install it (apt-get install -y python3)" >&2; exit 1; }
echo "setup: installing uv from PyPI" >&2
# The interpreter's own pip where it may install (pyenv, a venv); else a private venv under
# .stack/tools (a distribution's python3 refuses global pip installs, PEP 668).
if python3 -m pip install --quiet --disable-pip-version-check uv >&2 2>/dev/null \
        && python3 -m uv --version >/dev/null 2>&1; then
    exec python3 -m uv "$@"
fi
python3 -m venv "$TOOLS" >&2 && "$TOOLS/bin/pip" install --quiet --disable-pip-version-check uv >&2 \
    || { echo "setup: ERROR: could not install uv; install it (python3 -m pip install uv, or apt-get install -y python3-venv and retry)" >&2; exit 1; }
exec "$TOOLS/bin/uv" "$@"
