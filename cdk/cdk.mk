# CDK targets, included by the root Makefile (which defines $(INSTALLED) and $(BIN)).
CDK_DIR := cdk
CDK_CLI := $(CDK_DIR)/node_modules/.bin/cdk
CDK_OUT := cdk.out
# Node 20 is past its end of life for jsii; the notice would drown the synth output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20
export CDK_DISABLE_CLI_TELEMETRY ?= true

.PHONY: synth cdk-test cdk-lint systemd-analyze lock cloud-smoke

# A throwaway stage end to end in a real AWS account (cdk/cloud_smoke.py): needs AWS credentials,
# AIPM_SMOKE_GITHUB_TOKEN and, for the default kiro-headless profile, AIPM_SMOKE_KIRO_API_KEY.
CLI_PROFILE ?= kiro-headless
cloud-smoke: $(INSTALLED) $(CDK_CLI) ## make cloud-smoke STAGE=smoke1 REPO=owner/test-repo [CLI_PROFILE=…]
	@test -n "$(STAGE)" -a -n "$(REPO)" || { echo "usage: make cloud-smoke STAGE=<name> REPO=<owner/repo>" >&2; exit 2; }
	$(BIN)/python -m cdk.cloud_smoke --stage "$(STAGE)" --repo "$(REPO)" --cli-profile "$(CLI_PROFILE)"

# The agent host's lock file (hashes for every wheel), resolved as of a fixed date so the same inputs give
# the same file; tests/cdk/test_lock.py fails when it is not current. Move the date forward to take updates.
LOCK_DATE := 2026-11-28T00:00:00Z
lock: $(INSTALLED) ## recompile cdk/host/agent.lock from pyproject.toml's agent extra + cdk/host/host-requirements.in
	$(BIN)/uv pip compile pyproject.toml $(CDK_DIR)/host/host-requirements.in --extra agent --generate-hashes \
		--universal --python-version 3.11 --exclude-newer $(LOCK_DATE) --no-progress --quiet \
		-o $(CDK_DIR)/host/agent.lock

$(CDK_CLI): $(CDK_DIR)/package.json $(CDK_DIR)/package-lock.json
	npm ci --prefix $(CDK_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# cfn-lint W3005 (a DependsOn next to a GetAtt on the same resource) is emitted by CDK itself: harmless.
# web-vendor: the console's xterm.js is uploaded with it (aipm/web/vendor/).
synth: $(INSTALLED) $(CDK_CLI) web-vendor ## synthesize the stack offline with the real CDK CLI (cdk-nag runs inside), then cfn-lint
	rm -rf $(CDK_OUT)
	$(CDK_CLI) synth --quiet --no-notices --output $(CDK_OUT)
	$(BIN)/cfn-lint --ignore-checks W3005 -- $(CDK_OUT)/*.template.json

# The user-data test runs `systemd-analyze verify` on the agent's unit.
systemd-analyze:
	@command -v systemd-analyze >/dev/null || { \
		test "$$(id -u)" = 0 || { echo "systemd-analyze missing: apt-get install systemd" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; }

cdk-test: $(INSTALLED) systemd-analyze ## template, nag and user-data tests of the CDK app
	$(BIN)/python -m pytest tests/cdk $(PYTEST_ARGS)

cdk-lint: $(INSTALLED)
	$(BIN)/ruff check cdk tests/cdk
	$(BIN)/ruff format --check cdk tests/cdk
	$(BIN)/mypy cdk
