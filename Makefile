# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench clean hub-demo

VENDOR := gateway/web/static/vendor/.built

$(BIN)/.installed: pyproject.toml
	tools/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Chart.js, its annotation plugin and Alpine.js from the npm registry, through web/package-lock.json.
$(VENDOR): web/package.json web/package-lock.json
	tools/build-page

## demo: run the gateway on its embedded defaults (state in ./var, page on http://localhost:8080)
demo: $(BIN)/.installed $(VENDOR)
	$(BIN)/trackside-gateway run

## test: install what the tests need, start a real Kafka broker, run every test, stop the broker
test: $(BIN)/.installed $(VENDOR)
	tools/install-system-deps test
	tools/run-tests

## test-fast: the unit half alone (tests/unit: no broker, database, browser or process), in seconds
test-fast: $(BIN)/.installed $(VENDOR)
	$(BIN)/python -m pytest -q -m "not system" tests/unit

## hub-demo: a local try of the hub: Kafka, PostgreSQL, a box replaying the sample, the hub's page on :8090
hub-demo: $(BIN)/.installed $(VENDOR)
	tools/install-system-deps test
	tools/hub-demo

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway tests tools
	$(BIN)/mypy

bench: $(BIN)/.installed $(VENDOR)
	tools/bench

clean:
	rm -rf $(VENV) var .pytest_cache build *.egg-info web/node_modules gateway/web/static/vendor
