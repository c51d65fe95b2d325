# Two commands for a fresh machine: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
VENV := .venv
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: setup services demo test lint typecheck bench clean

setup: services $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock infra/bootstrap.sh
	infra/bootstrap.sh
	touch $@

services:
	infra/services.sh

demo: setup
	$(VENV)/bin/kuzet demo

lint: $(VENV)/.synced
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# Three pytest workers (pytest-xdist) on the two cores CI has: every test has its own database, ports
# and temporary folder, and most wait on services, so the suite runs in about half the time of one.
# The twenty slowest tests are listed at the end: where to look when the suite grows past its 10 minutes.
PYTEST_WORKERS ?= 3

test: setup lint typecheck node_modules/.installed
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --durations=20

bench: setup
	$(VENV)/bin/python bench/ingest.py
	$(VENV)/bin/python bench/worker.py
	$(VENV)/bin/python bench/claims.py
	$(VENV)/bin/python bench/alerts.py
	$(VENV)/bin/python bench/model_cost.py
	$(VENV)/bin/python bench/history.py
	$(VENV)/bin/python bench/console.py
	$(VENV)/bin/python bench/retention.py
	$(VENV)/bin/python bench/drills.py
	$(VENV)/bin/python bench/panic.py
	$(VENV)/bin/python bench/e2e.py
	$(VENV)/bin/python bench/footprint.py
	$(VENV)/bin/python bench/capacity.py
	$(VENV)/bin/python bench/edge.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
