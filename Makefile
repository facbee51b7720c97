# The two commands of the README: `make demo` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser fhir-validator demo test lint stack-start stack-stop stack-status clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

WEB_ASSETS := respmon/web/static/vendor/VERSIONS

# htmx and uPlot from the npm registry at the pinned versions, served by the team service itself
$(WEB_ASSETS): respmon/web/package.json respmon/web/package-lock.json infra/web-assets.sh
	infra/web-assets.sh

install: $(BIN)/.installed $(WEB_ASSETS)

# the HAPI FHIR R4 validator (jars from Maven Central, cached under .stack/fhir-validator) for tests/test_fhir
FHIR_VALIDATOR := .stack/fhir-validator/classes/Validate.class

$(FHIR_VALIDATOR): infra/fhir-validator/pom.xml infra/fhir-validator/Validate.java infra/fhir-validator.sh
	infra/fhir-validator.sh

fhir-validator: $(FHIR_VALIDATOR)

# Debian's Chromium and chromedriver (browser tests, PDF reports), installed when missing
browser:
	infra/browser.sh

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

test: lint browser fhir-validator
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean: stack-stop
	infra/stack.sh clean
	rm -rf $(VENV) respmon/web/node_modules respmon/web/static/vendor
