VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: venv run test lint bench example

# Two levels of one venv: `make run` installs what serving needs (".[service]"), `make test`
# (lint, bench) everything the tests need (".[dev]", which includes ".[service]").
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed: make ... PYTHON=python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.service: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[service]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.service

venv: $(VENV)/.installed

run: $(VENV)/.service
	$(VENV)/bin/conveyor serve

example: $(VENV)/.service
	$(PY) examples/quickstart.py

test: venv
	scripts/test-services.sh
	PATH="$$PATH:/usr/sbin" $(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check conveyor_core conveyor app tests benchmarks
	$(VENV)/bin/ruff format --check conveyor_core conveyor app tests benchmarks
	$(VENV)/bin/mypy

bench: venv
	$(PY) benchmarks/engine.py
