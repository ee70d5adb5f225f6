# The commands a newcomer runs are the commands CI runs: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlinfra-installed

.PHONY: setup chromium quickstart test lint fmt typecheck unit bench clean

# Create .venv if missing and install the project (editable) with its dev and local-mode extras.
setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Headless Chromium from Debian's packages, for the test that opens the drift report page (installed when missing).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# The outer loop on the local AWS emulator, in a scratch copy of the stacks (examples/quickstart.py).
quickstart: setup
	$(BIN)/python examples/quickstart.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	mkdir -p build/typecheck
	ln -sfn ../../cli build/typecheck/mlinfra
	ln -sfn ../../infra build/typecheck/mlinfra_infra
	ln -sfn ../../model_templates build/typecheck/mlinfra_templates
	ln -sfn ../../drift build/typecheck/mlinfra_drift
	$(BIN)/mypy

# pytest exits 5 when a selection collects no test; that is not a failure.
unit: setup chromium
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS) || test $$? -eq 5

test: lint typecheck unit

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mlinfra .pytest_cache .ruff_cache .mypy_cache
