# Two entry points do all the set-up themselves on a fresh machine:
#   make serve   — edgefleet in one process on SQLite (./edgefleet.db)
#   make test    — the whole test suite (SQLite and MariaDB halves)
# The virtual environment is rebuilt whenever pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench-northbound manifests schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The laptop path runs both programs: edgefleet serve, and edgefleet-agent against it.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server,agent]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/edgefleet serve $(ARGS)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-northbound: $(VENV)/.dev
	$(BIN)/python bench/northbound.py $(ARGS)

# The chart's CRDs and manifests/ from their sources (controller/kube/crds.py, the chart).
manifests: $(VENV)/.dev
	$(BIN)/python -m scripts.helm

# docs/schemas/*.json from the frame declarations in agent/protocol.py.
schemas: $(VENV)/.dev
	$(BIN)/python -m scripts.protocol_schemas

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
