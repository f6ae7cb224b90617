# One entry point for developers and CI. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install clis web-vendor sysdeps docs-diagram demo local test lint typecheck bench clean

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

# The console's attach terminal: xterm.js from npm (pinned), vendored with its licence into the git-ignored
# aipm/web/vendor/, which the local console server serves and the CDK app uploads with the console.
XTERM_VERSION := 5.5.0
WEB_VENDOR := aipm/web/vendor
XTERM_NPM := .cache/npm/xterm
XTERM_PKG := $(XTERM_NPM)/node_modules/@xterm/xterm
$(WEB_VENDOR)/.xterm-$(XTERM_VERSION):
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (Debian: apt-get install npm)" >&2; exit 1; }
	mkdir -p $(XTERM_NPM) $(WEB_VENDOR)
	npm install --prefix $(XTERM_NPM) --no-save --no-audit --no-fund --ignore-scripts --loglevel=error @xterm/xterm@$(XTERM_VERSION)
	cp $(XTERM_PKG)/lib/xterm.js $(XTERM_PKG)/css/xterm.css $(WEB_VENDOR)/
	cp $(XTERM_PKG)/LICENSE $(WEB_VENDOR)/xterm-LICENSE.txt
	rm -f $(WEB_VENDOR)/.xterm-*
	touch $@

web-vendor: $(WEB_VENDOR)/.xterm-$(XTERM_VERSION) ## vendor the console's pinned xterm.js (npm) into aipm/web/vendor/

# The demo and the local stack need only the `local` extra (no CDK, linters or test tools).
$(VENV)/.installed-local: pyproject.toml
	@echo "Installing the 'local' extra into $(VENV) (once; pip is quiet meanwhile, 18-28 s on a cold cache)…"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local]'
	touch $@

CLI ?= emulator
demo: $(VENV)/.installed-local $(if $(filter emulator,$(CLI)),,$(CLIS)) ## one sample task through the local stack (CLI=<profile>)
	$(BIN)/python -m aipm.local.demo --cli $(CLI)

local: $(VENV)/.installed-local ## keep the local stack up until Ctrl-C
	@$(MAKE) --no-print-directory web-vendor || echo "warning: without npm the console's attach terminal is unavailable" >&2
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

test: sysdeps lint typecheck clis web-vendor ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED) ## speed figures as ratios; writes bench/results.json
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) cdk.out cdk/node_modules .pytest_cache .mypy_cache .ruff_cache

-include cdk/cdk.mk
