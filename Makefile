# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	tools/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: run the gateway on its embedded defaults (state in ./var, page on http://localhost:8080)
demo: $(BIN)/.installed
	$(BIN)/trackside-gateway run

## test: install what the tests need, start a real Kafka broker, run every test, stop the broker
test: $(BIN)/.installed
	tools/run-tests

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway tests tools

clean:
	rm -rf $(VENV) var .pytest_cache build *.egg-info
