# Two commands: `make run` and `make test`. Everything else is a helper for them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KJERNE_HOST ?= 127.0.0.1
KJERNE_PORT ?= 8080
KJERNE_DB ?= sqlite:///var/kjerne.db
export KJERNE_HOST KJERNE_PORT KJERNE_DB

.PHONY: run test lint bench venv clean sysdeps test-properties-long

sysdeps:
	tools/ensure-system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch node_modules/.installed

venv: $(STAMP)

run: $(STAMP)
	mkdir -p var
	$(BIN)/kjerne db upgrade --db $(KJERNE_DB)
	$(BIN)/kjerne demo --db $(KJERNE_DB)
	$(BIN)/kjerne serve --dev --db $(KJERNE_DB) --host $(KJERNE_HOST) --port $(KJERNE_PORT)

test: sysdeps $(STAMP) node_modules/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/kjerne/access src/kjerne/store
	$(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/kjerne/access src/kjerne/store

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/portal.py
	$(BIN)/python bench/maledata.py
	$(BIN)/python bench/svarrapport.py
	$(BIN)/python bench/lastn.py

clean:
	rm -rf $(VENV) var .pytest_cache

# The access property suite at 20,000 generated cases (make test runs 2,000).
test-properties-long: $(STAMP)
	KJERNE_HYPOTHESIS_PROFILE=long $(BIN)/pytest -q -n 2 tests/access/test_properties.py
