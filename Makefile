# helmops — developer entry points. A fresh machine needs only `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HELMOPS_CACHE_DIR ?= $(HOME)/.cache/helmops
PYTEST_ARGS ?=
## Unit tests start no process (tests/unit/conftest.py) and run on two workers: under 60 s on 2 cores.
UNIT_PYTEST_ARGS ?= -n 2

.PHONY: venv tools test unit integration lint crds demo bench devenv-up devenv-down clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@echo "venv: installing helmops and its test dependencies into $(VENV)"
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

tools: venv
	@hack/tools

lint: venv
	$(VENV)/bin/ruff check helmops tests hack
	$(VENV)/bin/mypy helmops tests/support hack/bench hack/demo.py

crds: venv
	hack/gen-crds

## The whole suite: provisions tools, lints, type-checks, then runs unit and integration tests.
test: venv tools lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -q tests/unit $(UNIT_PYTEST_ARGS) $(PYTEST_ARGS)

integration: venv tools
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

## The main job: a local control plane, the CRDs, helmops with the flag on, example HelmApps turning Ready.
demo: venv tools
	hack/demo

bench: venv tools
	hack/bench/run all

devenv-up: venv tools
	hack/devenv up

devenv-down: venv
	hack/devenv down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
