# The two commands of the README: `make demo` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint stack-start stack-stop stack-status clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

stack-start: install
	infra/stack.sh start

stack-stop:
	infra/stack.sh stop

stack-status:
	infra/stack.sh status

demo: stack-start
	$(BIN)/respmon demo

# ruff (lint, import order), mypy (types of the production packages), import-linter (the layers)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean: stack-stop
	infra/stack.sh clean
	rm -rf $(VENV)
