# One entry point for developers and CI. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install clis sysdeps docs-diagram demo local test lint typecheck bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[agent,local,cdk,dev,cli]'
	touch $@

install: $(INSTALLED) ## create .venv and install the project with every extra

# The real coding-agent CLIs, pinned in aipm/local/clis.toml, from npm/PyPI into the git-ignored .cache/clis/.
CLIS := .cache/clis/installed.json
$(CLIS): aipm/local/clis.toml $(INSTALLED)
	$(BIN)/python -m aipm.local.clis install

clis: $(CLIS) ## install the pinned real CLIs (idempotent, cached)

# The demo and the local stack need only the `local` extra (no CDK, linters or test tools).
$(VENV)/.installed-local: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local]'
	touch $@

CLI ?= emulator
demo: $(VENV)/.installed-local $(if $(filter emulator,$(CLI)),,$(CLIS)) ## one sample task through the local stack (CLI=<profile>)
	$(BIN)/python -m aipm.local.demo --cli $(CLI)

local: $(VENV)/.installed-local ## keep the local stack up until Ctrl-C
	$(BIN)/python -m aipm.local.stack

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# Debian packages the tests drive for real (installed when missing, as root; CI machines run as root):
# systemd-analyze (CDK user-data), chromium + chromedriver (tests/web), sshd (tests/cli/test_ssh.py), dot (docs),
# bwrap (the agent's sandbox), /usr/bin/python3 (the sandbox's terminal launcher), ip (tests/containment).
sysdeps: systemd-analyze
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	test -x /usr/bin/python3 || missing="$$missing python3"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
		test "$$(id -u)" = 0 || { echo "missing Debian packages:$$missing (as root: apt-get install$$missing)" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing fonts-dejavu-core; \
	fi

docs-diagram: sysdeps ## re-render docs/architecture.png from docs/architecture.dot (Graphviz)
	dot -Tpng -Gdpi=96 docs/architecture.dot -o docs/architecture.png

test: sysdeps lint typecheck clis ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED) ## speed figures as ratios; writes bench/results.json
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) cdk.out cdk/node_modules .pytest_cache .mypy_cache .ruff_cache

-include cdk/cdk.mk
