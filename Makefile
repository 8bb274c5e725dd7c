# Saga orchestrator: every target installs what it needs first (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export STACK_DIR ?= $(CURDIR)/.stack
UV := $(CURDIR)/stack/uv.sh
WEB_PORT ?= 6066
PYTEST_ARGS ?=

.PHONY: help setup dev-up dev-down status logs clean run worker simulators monitor test unit bench lint \
        browser snapshots-rebuild tables-restore chaos bench-e2e bench-agent bench-tick bench-timeouts bench-retention bench-charts \
        compose-config compose-up compose-down

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## check Java/Maven/Python and install the Python environment (uv sync)
	@./stack/setup.sh

dev-up: setup ## start the local stack: Kafka, Pulsar, PostgreSQL (idempotent)
	@./stack/stack.sh up

dev-down: ## stop the local stack
	@./stack/stack.sh down

status: ## what runs where (stack, and the worker's /health)
	@./stack/stack.sh status
	@printf '  %-9s ' worker; curl -fsS --max-time 2 http://127.0.0.1:$(WEB_PORT)/health 2>/dev/null && echo || echo "down (http://127.0.0.1:$(WEB_PORT)/health)"

logs: ## follow the stack's and the demo's logs
	@./stack/stack.sh logs

clean: ## stop the stack and delete its data, logs and worker datadirs (keeps the jar cache)
	@./stack/stack.sh clean
	@rm -rf .pytest_cache .ruff_cache .mypy_cache

run: dev-up ## orchestrator + participant simulators + demo sagas on the local stack (DEMO=0: no demo load)
	@./stack/run.sh

worker: dev-up ## the orchestrator worker alone, as deployed (web on 127.0.0.1:$(WEB_PORT))
	@DATADIR=$${DATADIR:-$(STACK_DIR)/workers/worker} $(UV) run --no-sync python -m orchestrator worker -l info --web-host $${WEB_HOST:-127.0.0.1} --web-port $(WEB_PORT)

simulators: setup ## the participant simulators alone (see python -m simulators.participants --help)
	@$(UV) run --no-sync python -m simulators.participants

monitor: setup ## saga lifecycle events as they happen
	@$(UV) run --no-sync python -m orchestrator.monitor

test: dev-up browser ## the whole suite (unit, integration, end to end) on the local stack
	@$(UV) run --no-sync pytest $(PYTEST_ARGS)

browser: ## install Debian's Chromium when missing (the dashboard test drives it headless)
	@./stack/browser.sh

snapshots-rebuild: setup ## rewrite every PostgreSQL snapshot from the sagas changelog
	@$(UV) run --no-sync python -m snapshots rebuild

tables-restore: setup ## refill the table changelogs from the snapshots (stop workers, wipe DATADIRs first)
	@$(UV) run --no-sync python -m snapshots restore

unit: setup ## unit tests only (no stack needed)
	@$(UV) run --no-sync pytest tests/unit $(PYTEST_ARGS)

bench: dev-up ## the whole suite: bench/results/<UTC date>.json + charts (bench/README.md; QUICK=1, SAGAS=, RATES=)
	@$(UV) run --no-sync python -m benchmarks.suite

bench-tick: setup ## the deadline timer's tick cost with 100,000 pending deadlines (PENDING=100000)
	@$(UV) run --no-sync python -m benchmarks.deadline_tick --pending $${PENDING:-100000} $${JSON:+--json $$JSON}

bench-agent: dev-up ## the saga agent's rate against a pass-through Faust agent's (EVENTS=20000)
	@$(UV) run --no-sync python -m benchmarks.agent_rate --events $${EVENTS:-20000} $${JSON:+--json $$JSON}

bench-e2e: dev-up ## end-to-end saga throughput and latency, against a pass-through agent (SAGAS=5000 RATE= ECHO=1 STEP=1 PT_EVENTS=20000)
	@$(UV) run --no-sync python -m benchmarks.saga_throughput --sagas $${SAGAS:-5000} \
		--passthrough-events $${PT_EVENTS:-20000} $${RATE:+--rate $$RATE} \
		$$([ "$${ECHO:-0}" = 1 ] && echo --echo-sagaid) $$([ "$${STEP:-0}" = 1 ] && echo --step-latency) \
		$${JSON:+--json $$JSON}

bench-timeouts: dev-up ## RevertPartner lag after the deadline, 500 silent sagas timing out together (SAGAS=500)
	@$(UV) run --no-sync python -m benchmarks.timeout_burst --sagas $${SAGAS:-500} $${JSON:+--json $$JSON}

chaos: dev-up ## the fault harness: every scenario under load, one table (ONLY=kill,kafka,pulsar,postgres,duplicates,hostile RATE=40 DURATION=30)
	@$(UV) run --no-sync python -m chaos --rate $${RATE:-40} --seconds $${DURATION:-30} $${ONLY:+--only $$ONLY}

bench-retention: dev-up ## RSS and recovery time with SAGAS=1000000 finished sagas stored, and after retention removed them
	@$(UV) run --no-sync python -m benchmarks.retention --sagas $${SAGAS:-1000000} $${JSON:+--json $$JSON}

bench-charts: setup ## redraw the charts of a results file (RESULTS=bench/results/<date>.json)
	@$(UV) run --no-sync python -m benchmarks.charts $${RESULTS:?RESULTS=bench/results/<date>.json}

lint: setup ## ruff and mypy
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync mypy

compose-config: ## validate docker-compose.yml (needs docker with the compose plugin)
	@docker compose version >/dev/null 2>&1 || { echo "docker compose is not available here: tests/unit/test_compose.py checks the file instead"; exit 1; }
	@docker compose config --quiet && echo "docker-compose.yml is valid"

compose-up: ## the same stack and the orchestrator in containers (needs a Docker engine)
	@docker compose up -d

compose-down: ## stop the containers
	@docker compose down
