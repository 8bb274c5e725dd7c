# Saga orchestrator: every target installs what it needs first (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export STACK_DIR ?= $(CURDIR)/.stack
UV := $(CURDIR)/stack/uv.sh
WEB_PORT ?= 6066
# SECURE=1: the secured local stack (TLS, credentials, ACLs; README "Security") for dev-up,
# dev-down, status, clean, worker and run; the worker and simulators load its env files.
export SECURE ?=
SECURE_ENV = if [ "$(SECURE)" = 1 ]; then set -a; . "$(STACK_DIR)/secure/worker.env"; set +a; DATADIR=$${DATADIR:-$(STACK_DIR)/secure/workers/worker}; fi;
PYTEST_ARGS ?=

.PHONY: help setup dev-up dev-down status logs clean run worker simulators monitor test unit bench lint prometheus helm screenshots \
        browser snapshots-rebuild tables-restore chaos upgrade-test soak bench-e2e bench-agent bench-tick bench-timeouts bench-retention bench-charts \
        compose-config docker-up docker-down images full-up full-down simple-up simple-down shared-up shared-down \
        dev-compose-up dev-compose-down integration-check

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## check Java/Maven/Python and install the Python environment (uv sync)
	@./stack/setup.sh

dev-up: setup ## start the local stack: Kafka, Pulsar, PostgreSQL (idempotent; SECURE=1: secured, README "Security")
	@./stack/stack.sh up

dev-down: ## stop the local stack
	@./stack/stack.sh down

status: ## what runs where (stack, the worker's /health, and containers when a Docker engine answers)
	@./stack/stack.sh status
	@printf '  %-9s ' worker; curl -fsS --max-time 2 http://127.0.0.1:$(WEB_PORT)/health 2>/dev/null && echo || echo "down (http://127.0.0.1:$(WEB_PORT)/health)"
	@./stack/deploy.sh status

logs: ## follow the local stack's and the demo's logs (DEPLOY=full|shared|dev: a compose deployment's)
	@if [ -n "$(DEPLOY)" ]; then ./stack/deploy.sh logs $(DEPLOY); else ./stack/stack.sh logs; fi

clean: ## stop the stack and delete its data, logs and worker datadirs (keeps the jar cache)
	@./stack/stack.sh clean
	@rm -rf .pytest_cache .ruff_cache .mypy_cache

run: dev-up ## orchestrator + participant simulators + demo sagas on the local stack (DEMO=0: no demo load; PARTICIPANTS=alpes; SECURE=1)
	@./stack/run.sh

worker: dev-up ## the orchestrator worker alone, as deployed (web on 127.0.0.1:$(WEB_PORT); SECURE=1: on the secured stack)
	@$(SECURE_ENV) DATADIR=$${DATADIR:-$(STACK_DIR)/workers/worker} $(UV) run --no-sync python -m orchestrator worker -l info --web-host $${WEB_HOST:-127.0.0.1} --web-port $(WEB_PORT)

simulators: setup ## the participant simulators alone (see python -m simulators.participants --help)
	@$(UV) run --no-sync python -m simulators.participants

monitor: setup ## saga lifecycle events as they happen (scripts/monitor_saga_events.py; BROKER_URL=)
	@$(UV) run --no-sync python scripts/monitor_saga_events.py

test: dev-up browser prometheus helm ## the whole suite (unit, integration, end to end) on the local stack
	@$(UV) run --no-sync pytest $(PYTEST_ARGS)

helm: ## build Helm from the Go module proxy when missing (.stack/bin/helm; the chart's checks)
	@./stack/helm.sh install

browser: ## install Debian's Chromium when missing (the dashboard test drives it headless)
	@./stack/browser.sh

screenshots: browser ## the README's screenshots from a running deployment (make run first): docs/img/*.png
	@$(UV) run --no-sync python scripts/screenshots.py

prometheus: ## install Debian's Prometheus server when missing (a test evaluates the Grafana dashboard with it)
	@./stack/prometheus.sh

snapshots-rebuild: setup ## rewrite every PostgreSQL snapshot from the sagas changelog
	@$(UV) run --no-sync python -m snapshots rebuild

tables-restore: setup ## refill the table changelogs from the snapshots (stop workers, wipe DATADIRs first)
	@$(UV) run --no-sync python -m snapshots restore

unit: setup helm ## unit tests only (no stack needed; Helm for the chart test)
	@$(UV) run --no-sync pytest tests/unit $(PYTEST_ARGS)

bench: dev-up ## the whole suite: bench/results/<UTC date>.json + charts (bench/README.md; QUICK=1, SAGAS=, RATES=)
	@$(UV) run --no-sync python -m benchmarks.suite

bench-tick: setup ## the deadline timer's tick cost with 100,000 pending deadlines (PENDING=100000)
	@$(UV) run --no-sync python -m benchmarks.deadline_tick --pending $${PENDING:-100000} $${JSON:+--json $$JSON}

bench-agent: dev-up ## the saga agent's rate against a pass-through Faust agent's (EVENTS=20000; PROFILE=1: where the CPU goes, py-spy)
	@$(UV) run --no-sync python -m benchmarks.agent_rate --events $${EVENTS:-20000} $${JSON:+--json $$JSON} \
		$$([ "$${PROFILE:-0}" = 1 ] && echo --profile bench/results/profile)

bench-e2e: dev-up ## end-to-end saga throughput and latency, against a pass-through agent (SAGAS=5000 RATE= ECHO=1 STEP=1 PT_EVENTS=20000)
	@$(UV) run --no-sync python -m benchmarks.saga_throughput --sagas $${SAGAS:-5000} \
		--passthrough-events $${PT_EVENTS:-20000} $${RATE:+--rate $$RATE} \
		$$([ "$${ECHO:-0}" = 1 ] && echo --echo-sagaid) $$([ "$${STEP:-0}" = 1 ] && echo --step-latency) \
		$${JSON:+--json $$JSON}

bench-timeouts: dev-up ## RevertPartner lag after the deadline, 500 silent sagas timing out together (SAGAS=500)
	@$(UV) run --no-sync python -m benchmarks.timeout_burst --sagas $${SAGAS:-500} $${JSON:+--json $$JSON}

soak: dev-up ## a long load with a fault every few minutes, sampled over time: bench/results/soak-<date>/ (DURATION=3600 RATE=40 FAULT_EVERY=240)
	@$(UV) run --no-sync python -m chaos.soak --seconds $${DURATION:-3600} --rate $${RATE:-40} --fault-every-s $${FAULT_EVERY:-240}

upgrade-test: dev-up ## a rolling upgrade under load: the previous release's two workers replaced one at a time by this code (RATE=20 DURATION=60)
	@$(UV) run --no-sync python -m chaos.upgrade --rate $${RATE:-20} --seconds $${DURATION:-60}

chaos: dev-up ## the fault harness: every scenario under load, one table (ONLY=kill,kafka,pulsar,postgres,duplicates,hostile RATE=40 DURATION=30)
	@$(UV) run --no-sync python -m chaos --rate $${RATE:-40} --seconds $${DURATION:-30} $${ONLY:+--only $$ONLY}

bench-retention: dev-up ## RSS and recovery time with SAGAS=1000000 finished sagas stored, and after retention removed them
	@$(UV) run --no-sync python -m benchmarks.retention --sagas $${SAGAS:-1000000} $${JSON:+--json $$JSON}

bench-charts: setup ## redraw the charts of a results file (RESULTS=bench/results/<date>.json)
	@$(UV) run --no-sync python -m benchmarks.charts $${RESULTS:?RESULTS=bench/results/<date>.json}

lint: setup ## ruff, mypy, the layers contract (import-linter, pyproject.toml), helm lint and template of deploy/helm
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync mypy
	@$(UV) run --no-sync lint-imports --no-cache
	@./stack/helm.sh lint

# ---- containers (README, "Running"); a Docker engine is started when none answers
WORKERS ?=
DEPLOY_SH = WORKERS=$(WORKERS) ./stack/deploy.sh

docker-up: ## install (as root, Debian packages) and start a Docker engine when none answers
	@./stack/docker.sh up

docker-down: ## stop the Docker engine docker-up started
	@./stack/docker.sh down

images: docker-up ## build every image here, official ones replaced by stand-ins (no Docker Hub needed); writes .env
	@./stack/images/build.sh

full-up: docker-up ## everything in containers: Kafka, Pulsar, PostgreSQL, WORKERS=3 orchestrators, simulators
	@$(DEPLOY_SH) full-up

full-down: ## stop the full deployment (DATA=drop also deletes its volumes)
	@./stack/deploy.sh full-down

simple-up: docker-up ## orchestrator (WORKERS=1) and infrastructure in containers, no simulators
	@$(DEPLOY_SH) simple-up

simple-down: ## stop the simple deployment (DATA=drop also deletes its volumes)
	@./stack/deploy.sh simple-down

shared-up: docker-up ## orchestrator + Kafka + PostgreSQL joined to a running Pulsar (BROKER_URL, PULSAR_NETWORK)
	@$(DEPLOY_SH) shared-up

shared-down: ## stop the shared-Pulsar deployment (the shared broker is left alone)
	@./stack/deploy.sh shared-down

dev-compose-up: docker-up ## Kafka, Pulsar, PostgreSQL in containers on the local stack's ports (docker-compose.dev.yml)
	@./stack/deploy.sh infra-up

dev-compose-down: ## stop docker-compose.dev.yml's containers
	@./stack/deploy.sh infra-down

integration-check: ## sagas through a running deployment, checked (scripts/test_saga_integration.py; URLS="http://.. http://..")
	@python3 scripts/test_saga_integration.py $(foreach u,$(or $(URLS),$(shell ./stack/deploy.sh workers 2>/dev/null | cut -d' ' -f1),http://127.0.0.1:$(WEB_PORT)),--url $(u)) $(ARGS)

compose-config: ## validate every compose file
	@for f in docker-compose.dev.yml docker-compose.yml docker-compose.shared-pulsar.yml; do \
		./stack/docker.sh compose -f $$f config -q && echo "$$f is valid" || exit 1; done
