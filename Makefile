# The two commands: `make run` (embedded demo on http://127.0.0.1:8000) and `make test` (the full suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve migrate seed demo-request manage messages test test-fast lint bench worker beat clean faults security loadtest audit-deps

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## install: create .venv and install the pinned requirements (runtime and test tools)
install: $(VENV)/.installed messages

## messages: compile the zh-Hans and English translations
messages: $(VENV)/.installed
	@DEBUG=1 $(PY) manage.py compilemessages --verbosity 0 --ignore '$(VENV)'

migrate: install
	DEBUG=1 $(PY) manage.py migrate --noinput

seed: migrate
	DEBUG=1 $(PY) manage.py seed_demo --base-url http://$(HOST):$(PORT)

## demo-request: print a ready-to-run curl request for a fresh demo applicant (after `make run` or `make seed`)
demo-request: install
	@DEBUG=1 $(PY) manage.py demo_request --host $(HOST) --port $(PORT)

## manage: run a management command the way the demo does, e.g. `make manage CMD="verify_audit_chain"`
manage: install
	DEBUG=1 $(PY) manage.py $(CMD)

## run: install, migrate, load demo data and serve portal, API and admin on http://127.0.0.1:8000
run: seed
	DEBUG=1 EMBEDDED_BEAT=1 $(PY) manage.py runserver $(HOST):$(PORT)

## test: lint, import contracts, types and the full pytest suite
test: lint
	$(BIN)/pytest

## test-fast: the suite without integration and browser tests
test-fast: install
	$(BIN)/pytest -m "not integration and not browser"

## lint: ruff, import-linter contracts and mypy
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy .
	$(BIN)/bandit -q -r $(BANDIT_PATHS) -x '*/migrations/*' --skip B101 -b tests/security/bandit-baseline.json

# bandit: asserts (B101) only narrow types; tests/security/bandit-baseline.json holds the reviewed findings
# (SQL built from the ingest writer's own table names, webhook URLs limited to http(s) when saved, the
# synthetic generator's seeded random). A new finding fails the lint.
BANDIT_PATHS := config ops audit tenants datadomain underwriting insurer_portal securecompute docker

## faults: fault-injection tests on real processes (kill -9 a worker, restart Redis, drop the database ...)
faults: install
	$(BIN)/pytest tests/faults -m integration

## security: bandit, the security tests (schemathesis, isolation, CSRF, custodian refusals)
security: install
	$(BIN)/bandit -q -r $(BANDIT_PATHS) -x '*/migrations/*' --skip B101 -b tests/security/bandit-baseline.json
	$(BIN)/pytest tests/security

## audit-deps: known vulnerabilities in the pinned requirements (pip-audit asks PyPI's vulnerability
## service, so it needs a network that reaches it; it is not part of `make test` for that reason)
audit-deps: install
	$(BIN)/pip install --quiet pip-audit==2.10.1
	$(BIN)/pip-audit --strict --no-deps --disable-pip -r requirements.txt -r requirements-dev.txt

## loadtest: 20 requests/s for 5 minutes through gunicorn, workers, Redis and PostgreSQL on loopback
loadtest: install
	$(PY) -m benchmarks --only bench_load $(BENCH_ARGS)

## bench: the benchmarks; they print ratios measured side by side in one run (PostgreSQL and Redis
## from DATABASE_URL/REDIS_URL for the ingest and pipeline benchmarks; SecretFlow HEU when it installs)
bench: install
	$(BIN)/pip install --quiet -r requirements-bench.txt || echo "requirements-bench.txt did not install: HEU is reported as missing"
	$(PY) -m benchmarks $(BENCH_ARGS)

## worker: Celery workers for every queue against REDIS_URL (the custodian in its own process)
worker: install
	@test -n "$$REDIS_URL" || { echo "REDIS_URL must point to Redis (e.g. redis://127.0.0.1:6379/0)"; exit 2; }
	bash scripts/workers.sh

## beat: the periodic scheduler (heartbeats and later periodic jobs)
beat: install
	@test -n "$$REDIS_URL" || { echo "REDIS_URL must point to Redis (e.g. redis://127.0.0.1:6379/0)"; exit 2; }
	$(BIN)/celery -A config beat --loglevel INFO --schedule var/celerybeat-schedule

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .mypy_cache
