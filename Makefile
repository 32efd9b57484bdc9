# gatehub — `make run` starts a hub on the embedded defaults, `make test` runs the whole suite.
# Both set up everything they need first (a virtualenv in .venv with gatehub and its tools).

# the first interpreter that really runs and is 3.11+ (pyenv shims exist for inactive versions)
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install compile run test lint typecheck unit bench grpc-gen grpc-check clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "gatehub needs Python 3.11+ (python3.11 or newer on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,agent]'
	@touch $(STAMP)

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

typecheck: install
	$(BIN)/mypy

# pytest exits 5 when it collected no tests; that is reported, not hidden as success of a real run
test: install lint typecheck
	@if [ -f scripts/gen_grpc.py ]; then $(BIN)/python scripts/gen_grpc.py --check; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python -m bench

grpc-gen: install
	$(BIN)/python scripts/gen_grpc.py

grpc-check: install
	$(BIN)/python scripts/gen_grpc.py --check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
