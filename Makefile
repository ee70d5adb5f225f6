# The commands a newcomer runs are the commands CI runs: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlinfra-installed

.PHONY: setup chromium conformance quickstart test lint lint-workflows fmt typecheck unit bench clean ci-install lock access-contract

# Create .venv if missing and install the project (editable) with its dev and local-mode extras.
setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Headless Chromium from Debian's packages, for the browser tests (the drift report page, `mlinfra ui`). `make test`
# runs it: it installs only when chromium is missing, and says so first (apt-get, through sudo when not root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "make chromium: installing Debian's chromium package (apt-get$$([ "$$(id -u)" = 0 ] || echo ', with sudo')) for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# The framework containers' serving toolkits for tests/conformance, in an environment of the tests' own
# (build/conformance/, from tests/conformance/requirements.txt; never an mlinfra dependency). Built once, then instant.
conformance: setup
	$(BIN)/python tests/conformance/env.py

# The outer loop on the local AWS emulator, in a scratch copy of the stacks (examples/quickstart.py).
quickstart: setup
	$(BIN)/python examples/quickstart.py

lint: setup lint-workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The GitHub workflows: zizmor's security audits with the auditor persona (every finding, offline: no GitHub API)
# and the workflow and Dependabot schemas.
lint-workflows: setup
	$(BIN)/zizmor --offline --no-progress --persona=auditor .github/
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml

# What the stacks and promote workflows install: the locked runtime dependencies, every file checked against its
# hash, then the project itself without touching the network (no build isolation, no dependency resolution).
ci-install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/deploy.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --no-index .

# Refresh requirements/deploy.txt from pyproject.toml (runtime dependencies) and requirements/build.in, for CI's
# platform; .pulumi-version follows the locked pulumi SDK so the CLI and the SDK agree.
lock: setup
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra policy --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" --quiet -o requirements/deploy.txt
	sed -n 's/^pulumi==\([0-9.]*\).*/\1/p' requirements/deploy.txt > .pulumi-version

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
unit: setup chromium conformance
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS) || test $$? -eq 5

test: lint typecheck unit

# Re-record the access contract's calls (infra/policy/access-contract.json) from the emulator suites; review its diff.
access-contract: setup
	rm -rf build/access
	MLINFRA_ACCESS_RECORD=build/access $(BIN)/python -m pytest -n 2 -q tests/cli tests/drift
	$(BIN)/python -m tests.access_recorder merge --replace build/access

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mlinfra .pytest_cache .ruff_cache .mypy_cache build/conformance
