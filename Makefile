# One command per verb, used by people and CI alike.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test quick lint bench install install-test docs

run: install          ## install (idempotent) and run the service with embedded defaults
	$(BIN)/astralog serve

test: install-test lint   ## install everything the tests need, lint, run the whole suite
	$(BIN)/pytest

quick: install-test   ## the fast loop: unit tests only, no scenario tests
	$(BIN)/pytest -m "not slow" -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install-test   ## the benchmark harness (not part of the test budget)
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: install
	$(BIN)/astralog config docs > docs/configuration.md

install:
	scripts/install.sh run

install-test:
	scripts/install.sh test
