#!/usr/bin/env bash
# `make run`: the orchestrator worker in the foreground, with the participant simulators
# and (unless DEMO=0) a trickle of demo sagas in the background. Ctrl-C stops all three.
# PARTICIPANTS=alpes: the Alpes services' simulators (HTTP on 5001 and 8001, Avro and JSON
# topics) and the orchestrator's Alpes flow.
# The HTTP API needs a bearer token: OPERATOR_TOKEN if you set one, else a local token
# generated once into .stack/api-token (stack/token.sh); the worker and the demo get it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.stack}"
UV="$ROOT/stack/uv.sh"
WEB_PORT="${WEB_PORT:-6066}"
export WEB_PORT DATADIR="${DATADIR:-$STACK_DIR/workers/run}"
mkdir -p "$STACK_DIR/logs"
cd "$ROOT"

children=()
cleanup() {
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if [[ -n "${OPERATOR_TOKEN:-}" ]]; then
    token_from='$OPERATOR_TOKEN'
else
    token_from="\$(cat ${STACK_DIR/#$ROOT\//}/api-token)"
fi
OPERATOR_TOKEN="$("$ROOT/stack/token.sh")"
export OPERATOR_TOKEN

# SECURE=1 (make run SECURE=1): the secured stack's settings, the participants' for the
# simulators and the demo's Pulsar producer, the worker's for the worker.
load_env() { set -a; . "$1"; set +a; }
SECURE_DIR="$STACK_DIR/secure"
if [[ "${SECURE:-}" == 1 ]]; then
    [[ -f "$SECURE_DIR/worker.env" ]] || { echo "run: no $SECURE_DIR/worker.env: make dev-up SECURE=1 first" >&2; exit 1; }
    DATADIR="$STACK_DIR/workers/run-secure"
fi
participants_env() { if [[ "${SECURE:-}" == 1 ]]; then load_env "$SECURE_DIR/participants.env"; fi; }

export PARTICIPANTS="${PARTICIPANTS:-contract}"
if [[ "$PARTICIPANTS" == alpes ]]; then
    export INTEGRACIONES_API_URL="${INTEGRACIONES_API_URL:-http://127.0.0.1:5001}"
    export ALIANZAS_API_URL="${ALIANZAS_API_URL:-http://127.0.0.1:8001}"
    (participants_env; exec "$UV" run --no-sync python -m simulators.alpes --reject-contract 0.2) \
        >"$STACK_DIR/logs/simulators.log" 2>&1 &
else
    (participants_env; exec "$UV" run --no-sync python -m simulators.participants) >"$STACK_DIR/logs/simulators.log" 2>&1 &
fi
children+=($!)
if [[ "${DEMO:-1}" != 0 ]]; then
    # The demo's lines (sagas starting and ending) come to this terminal and to its log.
    # (Through a process substitution, so that $! is the demo itself, not tee: stopping it
    # must stop the demo.)
    (participants_env; exec "$UV" run --no-sync python -m simulators.demo) > >(tee "$STACK_DIR/logs/demo.log") 2>&1 &
    children+=($!)
fi
cat <<MSG
------------------------------------------------------------------------------------------
 saga orchestrator ($PARTICIPANTS participants): worker on http://127.0.0.1:$WEB_PORT   dashboard: /dashboard
 health: /health  /ready   a saga: /api/v1/saga/status/<id>   lists: /api/v1/sagas
 API token (every role): $token_from   (README, "Security")
   curl -H "Authorization: Bearer $token_from" http://127.0.0.1:$WEB_PORT/api/v1/sagas
   SAGA_TOKEN=$token_from stack/uv.sh run python -m orchestrator sagas list
   dashboard: http://127.0.0.1:$WEB_PORT/dashboard asks for it once (paste it there)
 participant simulators log: $STACK_DIR/logs/simulators.log     demo log: $STACK_DIR/logs/demo.log
 lifecycle events: make monitor     stack: make status / make logs     stop: Ctrl-C, then make dev-down
------------------------------------------------------------------------------------------
MSG
(if [[ "${SECURE:-}" == 1 ]]; then load_env "$SECURE_DIR/worker.env"; fi
 exec "$UV" run --no-sync python -m orchestrator worker -l info --web-host 127.0.0.1 --web-port "$WEB_PORT") &
worker=$!
children+=($worker)
wait "$worker"
