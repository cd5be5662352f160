# The two commands a newcomer needs are `make run` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_PORT ?= 8765

.PHONY: setup run test lint sandbox clean

setup: $(STAMP)

# Reinstall only when the project's metadata changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/python -m pipelines.run

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check pipelines assets tests
	$(BIN)/ruff format --check pipelines assets tests
	$(BIN)/mypy

sandbox: setup
	$(BIN)/python -m pipelines.sandbox --port $(SANDBOX_PORT)

clean:
	rm -rf $(VENV) build *.egg-info
