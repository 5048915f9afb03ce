# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test venv system-deps

$(BIN)/realtime: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/realtime

## run: embedded single replica (in-memory, no Redis needed); prints the demo URL
run: venv
	@echo "realtime demo: http://$(HOST):$(PORT)/"
	$(BIN)/realtime serve --host $(HOST) --port $(PORT)

system-deps:
	bash scripts/install-system-deps.sh

## test: installs what the tests need (venv, redis-server, nginx, ...) and runs them all
test: venv system-deps
	$(BIN)/pytest $(PYTEST_ARGS)
