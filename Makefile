# gatehub — `make run` starts a hub on the embedded defaults, `make test` runs the whole suite.
# Both set up everything they need first: uv (pinned, from PyPI, in .uv/), then a virtualenv in
# .venv with exactly the versions in uv.lock (gatehub itself, its extras and every dev tool).

# the first interpreter that really runs and is 3.11+ (pyenv shims exist for inactive versions)
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# uv installs and checks the lock; its own version and hashes are in scripts/uv-requirements.txt
UV_DIR := .uv
UV     := $(UV_DIR)/bin/uv
# `make lock UPGRADE=0` re-resolves after a pyproject.toml edit and keeps every other pin
UPGRADE ?= 1
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
LOCK_HINT := uv.lock does not match pyproject.toml: run 'make lock' (newest versions) or 'make lock UPGRADE=0' (only what changed), then commit uv.lock

.PHONY: install compile run test lint typecheck unit bench grpc-gen grpc-check lock lock-check lock-interop clean

$(UV): scripts/uv-requirements.txt
	@test -n "$(PYTHON)" || { echo "gatehub needs Python 3.11+ (python3.11 or newer on PATH)"; exit 1; }
	@test -x $(UV_DIR)/bin/python || $(PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r scripts/uv-requirements.txt
	@touch $(UV)

# fails with LOCK_HINT when pyproject.toml and uv.lock disagree (nothing is installed then)
lock-check: $(UV)
	@$(UV) lock --check --offline --python $(PYTHON) -q || { echo "error: $(LOCK_HINT)" >&2; exit 1; }

$(STAMP): pyproject.toml uv.lock $(UV)
	@$(MAKE) --no-print-directory lock-check
	$(UV) sync --frozen --python $(PYTHON) --extra dev --extra agent -q
	@touch $(STAMP)

# refresh uv.lock: every package to the newest version the ranges in pyproject.toml allow
lock: $(UV)
	$(UV) lock --python $(PYTHON) $(if $(filter 1,$(UPGRADE)),--upgrade)
	@echo "uv.lock refreshed: run 'make test', then commit uv.lock"

# the third-party clients' virtualenvs (tests/interop/locks/*.in -> *.txt); a deliberate change
lock-interop: $(UV)
	$(UV_DIR)/bin/python scripts/lock_interop.py --uv $(UV)

# byte-compiled once: every `gatehub` process (the CLI, hubs the tests start) then skips
# compiling the package, which it would do on each start where PYTHONDONTWRITEBYTECODE is set
compile: $(STAMP)
	@$(BIN)/python -m compileall -q src

install: $(STAMP) compile

run: install
	$(BIN)/gatehub serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache .importlinter

typecheck: install
	$(BIN)/mypy

# the suite once per event loop (uvloop, as `gatehub serve`, and stock asyncio), side by side, each
# with its own log in .test-logs/; fails when either run fails or collects no tests (pytest's 5).
# `make test EVENT_LOOPS=uvloop` runs one; TEST_SEQUENTIAL=1 runs them one after the other.
EVENT_LOOPS ?= uvloop,asyncio
TEST_SEQUENTIAL ?= 0
test: lock-check install lint typecheck
	@if [ -f scripts/gen_grpc.py ]; then $(BIN)/python scripts/gen_grpc.py --check; fi
	$(BIN)/python scripts/test_loops.py --loops $(EVENT_LOOPS) $(if $(filter 1,$(TEST_SEQUENTIAL)),--sequential) -- $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python -m bench

grpc-gen: install
	$(BIN)/python scripts/gen_grpc.py

grpc-check: install
	$(BIN)/python scripts/gen_grpc.py --check

clean:
	rm -rf $(VENV) $(UV_DIR) .mypy_cache .ruff_cache .pytest_cache .test-logs build *.egg-info
