# One command per verb, used by people and CI alike.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test quick lint bench install install-test docs fuzz

run: install          ## install (idempotent) and run the service with embedded defaults
	$(BIN)/astralog serve

# Test processes (pytest-xdist). Most of the suite's time is spent waiting on gateways, browsers
# and flushes, so two processes use two cores well; each test file stays in one process, so its
# module fixtures (a gateway, a chDB path) start once. PYTEST_JOBS=0 runs in this process.
PYTEST_JOBS ?= 2
PARALLEL := -n $(PYTEST_JOBS) --dist loadfile

# The control plane's tests again with its state in PostgreSQL (a real server for the run, a
# database per test): the same API, commands and projections on the engine several nodes share.
CONTROL_PLANE_TESTS := $(addprefix tests/test_,$(addsuffix .py,admin_api accounts accounts_api \
	people_log org_deletion source_deletion alert_endpoints_api passkeys mfa members \
	members_invitation holds erasure me_identities session audit_readable retention alerts \
	secret_hygiene idempotency ingest_http))

test: install-test lint   ## install everything the tests need, lint, run the whole suite
	$(BIN)/pytest $(PARALLEL)
	TEST_CONTROL_PLANE=postgres $(BIN)/pytest $(PARALLEL) -q -p tests.postgres_server \
		$(CONTROL_PLANE_TESTS)

quick: install-test   ## the fast loop: unit tests only, no scenario tests
	$(BIN)/pytest $(PARALLEL) -m "not slow" -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/typecheck.py   # mypy, connectors/ as astralog.connectors

bench: install-test   ## the benchmark harness (not part of the test budget)
	$(BIN)/python -m bench $(BENCH_ARGS)

FUZZ_SCALE ?= 60
FUZZ_SECONDS ?= 600
fuzz: install-test   ## long fuzzing: every fuzz test x FUZZ_SCALE examples, then atheris on the parsers
	HYPOTHESIS_PROFILE=long FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/pytest -m fuzz --timeout=0 -q \
		tests/test_fuzz_ingest.py tests/test_fuzz_search.py tests/test_fuzz_admin.py
	mkdir -p test-artifacts/fuzz/corpus
	cd test-artifacts/fuzz && ../../$(BIN)/python ../../fuzz/parsers.py \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 corpus

docs: install
	$(BIN)/astralog config docs > docs/configuration.md

install:
	scripts/install.sh run

install-test:
	scripts/install.sh test
