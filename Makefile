# Every target installs what it needs into .venv first, so a fresh machine needs only
# Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help run migrate test lint format bench demo clean

help: ## Show the targets and what they do
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is required; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e clients/python
	@touch $@

run: $(STAMP) ## Serve on 127.0.0.1:8080 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/ingestion-tracker serve

migrate: $(STAMP) ## Apply every pending migration and exit
	$(BIN)/ingestion-tracker migrate

test: $(STAMP) ## Run the whole test suite against a real PostgreSQL
	$(BIN)/pytest

lint: $(STAMP) ## Check formatting, lint rules, types and the Compose file
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

format: $(STAMP) ## Rewrite files with ruff's formatter and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Measure event ingest, reads and stream fan-out on a tracker it starts (docs/benchmarks.md)
	$(BIN)/python -m bench

demo: $(STAMP) ## Run the whole loop on bundled documents, with live progress
	$(BIN)/python -m examples.demo

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
