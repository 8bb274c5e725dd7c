#!/usr/bin/env bash
# Copy the machine's own extra CA certificates (/usr/local/share/ca-certificates/*.crt) into
# docker/certs/, where the orchestrator image's build trusts them: a machine behind a
# TLS-inspecting proxy reaches PyPI only through such a certificate. Elsewhere it copies
# nothing, and the image trusts the base's own roots. docker/certs/*.crt is git-ignored.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$ROOT/docker/certs"
mkdir -p "$dest"
find "$dest" -name '*.crt' -delete
shopt -s nullglob
for c in /usr/local/share/ca-certificates/*.crt; do cp "$c" "$dest/"; done
