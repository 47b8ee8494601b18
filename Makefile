# Everything runs from a project-local virtualenv built from the hashed lock file.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all setup demo test lint format bench sandbox lock dev docs clean

all: test

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { echo "need Python 3.11 (found: $(PYTHON)); run: make PYTHON=/path/to/python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@# the project runs from this checkout: a .pth puts it on the venv's path (no build step, nothing unpinned)
	$(PY) -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'secmetrics_dagster.pth').write_text(str(pathlib.Path.cwd()) + '\\n')"
	@touch $(STAMP)

setup: $(STAMP)

## make demo: start the bundled vendor sandbox, materialize every asset into data/ (JSON + DuckDB), print a table
demo: $(STAMP)
	$(PY) -m secmetrics_dagster.demo

## make test: lint and format check (ruff), then start PostgreSQL (if it is not running) and an S3 server on
## 127.0.0.1, run pytest on three workers (a module's tests stay on one; prints the ten slowest tests), stop them.
## Three on two cores: at two, the CPUs sat 29% idle while tests waited on daemons, servers and timeouts.
TEST_WORKERS ?= 3
test: $(STAMP) lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=10 $(PYTEST_ARGS)

## make lint: ruff's lint rules and format check (pyproject.toml [tool.ruff]); `make format` rewrites the code
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make bench: 200,000 sandbox records through all four stores; prints records/s and peak RSS
bench: $(STAMP)
	$(PY) benchmarks/bench_snyk_stores.py $(BENCH_ARGS)

sandbox: $(STAMP)
	$(PY) -m secmetrics_dagster.sandbox $(SANDBOX_ARGS)

## make dev: the UI on http://127.0.0.1:3000 (DEV_ARGS="-p 3001" for another port) with the bundled sandbox started
## beside it and every source pointed at it (JSON files and DuckDB under data/, as `make demo`), on a persistent
## instance in data/dagster_home (this repository's dagster.yaml: SQLite, or PostgreSQL when DAGSTER_PG_HOST is set).
## The sandbox stops when the UI does. `make dev SANDBOX=0`: no sandbox; the sources use your own variables.
SANDBOX  ?= 1
DEV_ARGS ?=
dev: $(STAMP)
	@if [ -z "$$DAGSTER_HOME" ]; then mkdir -p data/dagster_home && cp dagster.yaml data/dagster_home/dagster.yaml; fi
	@export DAGSTER_HOME="$${DAGSTER_HOME:-$(CURDIR)/data/dagster_home}"; \
	if [ "$(SANDBOX)" = 0 ]; then \
	  exec $(VENV)/bin/dagster dev -m secmetrics_dagster $(DEV_ARGS); \
	else \
	  export STORE_FILE="$${STORE_FILE:-data/source/%TAG/%TENANCY.json}" STORE_DUCKDB="$${STORE_DUCKDB:-data/database.duckdb}"; \
	  exec $(PY) -m secmetrics_dagster.sandbox --port 0 --run $(VENV)/bin/dagster dev -m secmetrics_dagster $(DEV_ARGS); \
	fi

## make docs: regenerate the README's collector and variable tables from the sources
docs: $(STAMP)
	$(PY) -m secmetrics_dagster.docs

## make lock: re-resolve requirements.lock from pyproject.toml (needs network access to PyPI)
lock: $(STAMP)
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --generate-hashes --extra test --strip-extras --allow-unsafe -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) data .pytest_cache
