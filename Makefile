VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv run test lint bench example

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/conveyor serve

example: venv
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
