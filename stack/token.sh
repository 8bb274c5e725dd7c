#!/usr/bin/env bash
# The local HTTP API token (README, "Security"), printed: $OPERATOR_TOKEN when it is set,
# else the one kept in $STACK_DIR/api-token (.stack/api-token), generated there the first
# time (32 random bytes, URL-safe; readable by its owner only). `make run` and the compose
# deployments (stack/deploy.sh) give it to the workers as OPERATOR_TOKEN (every role); the
# scripts that call the API read it from there (scripts/test_saga_integration.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
if [[ -n "${OPERATOR_TOKEN:-}" ]]; then
    printf '%s\n' "$OPERATOR_TOKEN"
    exit 0
fi
file="$STACK_DIR/api-token"
if [[ ! -s "$file" ]]; then
    mkdir -p "$STACK_DIR"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file.tmp" && mv "$file.tmp" "$file")
fi
tr -d '[:space:]' <"$file"
echo
