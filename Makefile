# One entry point for developers and CI. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install sysdeps demo local test lint typecheck bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[agent,local,cdk,dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install the project with every extra

demo: $(INSTALLED) ## run one sample task through the whole local stack, print the PR and timeline
	$(BIN)/python -m aipm.local.demo

local: $(INSTALLED) ## keep the local stack up until Ctrl-C
	$(BIN)/python -m aipm.local.stack

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# Debian packages the tests drive for real (installed when missing, as root; CI machines run as root).
sysdeps: systemd-analyze

test: sysdeps lint typecheck ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED) ## speed figures as ratios; writes bench/results.json
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) cdk.out cdk/node_modules .pytest_cache .mypy_cache .ruff_cache

-include cdk/cdk.mk
