# `make demo` installs research-mcp into .venv and runs the demo in a new folder; `make serve` runs the server on
# stdio; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TS_CLIENT := tests/integration/ts_client

DEMO_DIR ?= demo-runs/$(shell date +%Y%m%d-%H%M%S)

.PHONY: install dev demo serve doctor node lint test bench clean

$(BIN)/research-mcp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@
	@echo "installed: $(abspath $(BIN)/research-mcp)"

install: $(BIN)/research-mcp

$(VENV)/.dev: $(BIN)/research-mcp
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

dev: $(VENV)/.dev

$(VENV)/.demo: $(BIN)/research-mcp
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $@

demo: $(VENV)/.demo
	$(BIN)/research-mcp demo $(DEMO_DIR)

serve: install
	@echo "research-mcp on stdio; clients launch: $(abspath $(BIN)/research-mcp) serve --workspace DIR" >&2
	$(BIN)/research-mcp serve

doctor: install
	$(BIN)/research-mcp doctor

$(TS_CLIENT)/node_modules: $(TS_CLIENT)/package-lock.json
	npm ci --prefix $(TS_CLIENT) --no-audit --no-fund --loglevel=error
	@touch $@

node: $(TS_CLIENT)/node_modules

lint: dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pyright

test: dev node lint
	$(BIN)/python -m pytest -q

bench: dev
	$(BIN)/python -m evals.bench

clean:
	rm -rf $(VENV) $(TS_CLIENT)/node_modules
