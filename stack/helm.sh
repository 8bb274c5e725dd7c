#!/usr/bin/env bash
# Helm for the chart's checks (deploy/helm): built from the Go module proxy into
# .stack/bin/helm when missing (no download site is reachable here), then:
#   stack/helm.sh install     only make sure it is there (make test: tests/unit/test_helm_chart.py)
#   stack/helm.sh lint        helm lint, and helm template with the defaults (make lint)
#   stack/helm.sh path        print the binary's path
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
BIN="${STACK_DIR:-$ROOT/.stack}/bin"
HELM="$BIN/helm"
CHART="$ROOT/deploy/helm/saga-orchestrator"
LOGS="${STACK_DIR:-$ROOT/.stack}/logs"

install() {
    # go install leaves the patch level out of `helm version`: the build writes a stamp.
    if [[ -x "$HELM" && "$(cat "$HELM.version" 2>/dev/null)" == "$HELM_VERSION" ]]; then
        return
    fi
    command -v go >/dev/null 2>&1 || { echo "helm: ERROR: Go is missing (it builds Helm from the module proxy); install Go 1.26" >&2; exit 1; }
    mkdir -p "$BIN" "$LOGS"
    echo "helm: building Helm $HELM_VERSION from the Go module proxy (a few minutes, once)" >&2
    if ! GOBIN="$BIN" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" >"$LOGS/helm-build.log" 2>&1; then
        tail -n 20 "$LOGS/helm-build.log" >&2
        echo "helm: ERROR: go install helm.sh/helm/v4/cmd/helm@${HELM_VERSION} failed; see $LOGS/helm-build.log" >&2
        exit 1
    fi
    echo "$HELM_VERSION" >"$HELM.version"
}

case "${1:-install}" in
    install) install ;;
    path) install; echo "$HELM" ;;
    lint)
        install
        "$HELM" lint --strict "$CHART"
        "$HELM" template saga "$CHART" >/dev/null
        echo "helm: chart lints and renders (Helm $HELM_VERSION)"
        ;;
    *) echo "usage: stack/helm.sh install|path|lint" >&2; exit 2 ;;
esac
