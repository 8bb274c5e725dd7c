#!/bin/sh
# The orchestrator image's entry point.
#   worker       a Faust worker (the default): web on 0.0.0.0:$WEB_PORT, advertised to the
#                other workers as $WEB_HOST, by default this container's own address, so
#                that table routing reaches it when several containers share the partitions
#   simulators   the participant simulators (python -m simulators.participants)
#   demo         a trickle of demo sagas (python -m simulators.demo)
#   anything else is run as given
set -e
if [ -z "${WEB_HOST:-}" ]; then
    WEB_HOST="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')"
    export WEB_HOST
fi
case "${1:-worker}" in
    worker) shift || true; exec python -m orchestrator worker -l "${LOG_LEVEL:-info}" "$@" ;;
    simulators) shift; exec python -m simulators.participants "$@" ;;
    demo) shift; exec python -m simulators.demo "$@" ;;
    *) exec "$@" ;;
esac
