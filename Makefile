# compactrec: two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
DATA_DIR ?= $(if $(wildcard ../shared/data),../shared/data,)
RUN_DIR ?= runs/make-run
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench compile golden reproduce reproduce-quick image lint clean

setup: $(STAMP)  ## create .venv from the pinned constraints (idempotent)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found; install Python 3.11 or pass PY=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip<26"
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

run: setup  ## generate a synthetic stream and replay it through the hourly pipeline locally
	$(BIN)/python -m pipeline demo --out $(RUN_DIR) --hours 3 --events-per-hour 20000

test: setup  ## all tests, the end-to-end ones included
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -q -m "not e2e" $(PYTEST_ARGS)

bench: setup  ## benchmarks; figures go to docs/BENCHMARKS.md by hand, see docs/BENCHMARKS.md
	$(BIN)/python bench/run_all.py

compile: setup  ## regenerate specs/hourly_training.yaml
	$(BIN)/python -m pipeline compile --out specs/hourly_training.yaml

golden: setup  ## regenerate tests/testdata/hash_buckets.json (only when the hashing contract changes)
	$(BIN)/python -m tests.tools.golden --write tests/testdata/hash_buckets.json

reproduce: setup  ## paper reproductions at the papers' budgets (CPU-days here; resumable: finished runs are committed under reproduce/runs/ranking/ and only missing or --rerun-stale ones train); see docs/RESULTS.md "Plan for the paper budgets"
	$(BIN)/python -m reproduce.ranking --data-dir $(DATA_DIR) --methods full,mgqe,mgqe_compact --out docs/results_ranking.md
	$(BIN)/python -m reproduce.ranking --data-dir $(DATA_DIR) --out docs/results_ranking.md
	$(BIN)/python -m reproduce.hashing --data-dir $(DATA_DIR) --out docs/results_hashing.md

reproduce-quick: setup  ## one seed on a small budget (about 10 + 7 min here); the ranking report goes to runs/reproduce/, not docs/
	$(BIN)/python -m reproduce.ranking --quick --data-dir $(DATA_DIR)
	$(BIN)/python -m reproduce.hashing --quick --data-dir $(DATA_DIR) --out docs/results_hashing.md

image:  ## build the trainer container image (needs a Docker engine)
	docker build -f trainer/Dockerfile -t compactrec-trainer:latest .

lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
