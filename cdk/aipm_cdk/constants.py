"""Names, ports, sizes and defaults of the deployment, in one place (docs/architecture.md is the contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
HOST_FILES_DIR: Final = Path(__file__).resolve().parent.parent / "host"
WEB_DIR: Final = REPO_ROOT / "aipm" / "web"
README: Final = REPO_ROOT / "README.md"

PROJECT: Final = "aipm"
METRIC_NAMESPACE: Final = "AIPM"

# --- agent ports (docs/architecture.md) ---
POOL_PORT: Final = 8081
PROCESSOR_PORT: Final = 8082
ATTACH_PORT: Final = 8083
# The dispatcher talks to these; the attach port is reachable only through SSM port forwarding.
DISPATCH_PORTS: Final = (POOL_PORT, PROCESSOR_PORT)
AGENT_PORTS: Final = (POOL_PORT, PROCESSOR_PORT, ATTACH_PORT)

# --- records table (single-table design) ---
PK: Final = "pk"
SK: Final = "sk"
TTL_ATTRIBUTE: Final = "ttl"
CREATED_AT: Final = "createdAt"
STATUS_INDEX: Final = "status-index"
REPO_INDEX: Final = "repo-index"
KIND_INDEX: Final = "kind-index"
GSI_HASH_KEYS: Final = {STATUS_INDEX: "status", REPO_INDEX: "repo", KIND_INDEX: "kind"}
# Statuses in which a worker holds a lease (see the job state machine in docs/architecture.md).
LEASED_STATUSES: Final = ("claimed", "preparing", "generating", "committing", "pushed")
FAILED_STATUSES: Final = ("failed", "timed_out")
HEARTBEAT_SK: Final = "HEARTBEAT"
# The agents' own key space (pk AGENT#<agent id>): only the agent role may write it (an IAM leading-key
# condition denies every other writer of the records table), so the dispatcher can trust a heartbeat there.
AGENT_PK_PREFIX: Final = "AGENT#"
JOB_SK: Final = "JOB"

# --- idempotency table (Powertools idempotency defaults) ---
IDEMPOTENCY_KEY: Final = "id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expiration"

# --- Lambda ---
LAMBDA_RUNTIME_NAME: Final = "python3.12"
API_HANDLER: Final = "lambda_src.handler.lambda_handler"
DISPATCH_HANDLER: Final = "lambda_src.dispatch_handler.lambda_handler"
RECONCILE_HANDLER: Final = "lambda_src.reconcile_handler.lambda_handler"
RECONCILE_MINUTES: Final = 5
RECONCILE_MEMORY_MB: Final = 256
RECONCILE_TIMEOUT_S: Final = 120
API_MEMORY_MB: Final = 512
API_TIMEOUT_S: Final = 29  # API Gateway's integration timeout
DISPATCH_MEMORY_MB: Final = 256
DISPATCH_BATCH_SIZE: Final = 10
# The dispatcher's worst case: every job of a batch tries 2 endpoints (lambda_src/dispatch_handler.py) and
# each nudge may wait its whole timeout (DispatchSettings.nudge_timeout_s, 2 s); plus the secret, parameter
# and heartbeat reads with their retries and a cold start.
DISPATCH_ENDPOINTS_PER_JOB: Final = 2
DISPATCH_NUDGE_TIMEOUT_S: Final = 2
DISPATCH_OVERHEAD_S: Final = 20
DISPATCH_TIMEOUT_S: Final = (
    DISPATCH_BATCH_SIZE * DISPATCH_ENDPOINTS_PER_JOB * DISPATCH_NUDGE_TIMEOUT_S + DISPATCH_OVERHEAD_S
)
# Public Powertools for AWS Lambda (Python) v3 layer, built with every extra (pydantic v2, aws-xray-sdk).
POWERTOOLS_LAYER_ACCOUNT: Final = "017000801446"
POWERTOOLS_LAYER_NAME: Final = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
POWERTOOLS_LAYER_VERSION: Final = 27
# The Lambda asset: only the lambda_src package (Docker-style ignore patterns over the repository root).
LAMBDA_ASSET_EXCLUDE: Final = ("*", "!lambda_src", "**/__pycache__", "**/*.pyc", "**/tests", "**/.DS_Store")
# The agent's source distribution, uploaded for the host to `pip install '<src>[agent]'`.
AGENT_SOURCE_EXCLUDE: Final = (
    "*",
    "!pyproject.toml",
    "!README.md",
    "!lambda_src",
    "!ec2_agent",
    "!aipm",
    "!cdk/host/agent.lock",
    "**/__pycache__",
    "**/*.pyc",
    "**/*.egg-info",
    "**/tests",
    "**/.DS_Store",
)

# --- API ---
API_PREFIX: Final = "api"
HEALTH_PATH: Final = "health"
# Routes under /api/ without sign-in: the liveness probe and the API's OpenAPI document.
PUBLIC_PATHS: Final = (HEALTH_PATH, "openapi.json")
# GitHub's webhook deliveries: no Cognito token (GitHub cannot sign in); the Lambda verifies their HMAC.
WEBHOOK_PATH: Final = ("github", "webhook")
DELEGATE_PATHS: Final = (("personal-delegate",), ("delegate", "personal"))
# Routes with their own resource (API Gateway does not fall back from /api/personal-delegate/… to the
# /api/{proxy+} catch-all, which serves every other route: jobs, cancel, retry, workers).
SIGNED_IN_ROUTES: Final = (
    *((path, "POST") for path in DELEGATE_PATHS),
    (("personal-delegate", "status"), "GET"),
)
API_THROTTLE_RATE: Final = 20
API_THROTTLE_BURST: Final = 40
# WAF's per-IP rate limit (context wafRateLimitPer5Min): default, the range AWS WAF accepts, its window.
WAF_RATE_LIMIT_PER_5_MIN: Final = 1000
WAF_RATE_LIMIT_MIN: Final = 10
WAF_RATE_LIMIT_MAX: Final = 2_000_000_000
WAF_RATE_WINDOW_S: Final = 300
JOB_MAX_ATTEMPTS: Final = 3
RECORD_TTL_DAYS: Final = 90
# The CORS origin when neither frontendOrigin nor the web console gives one (no browser client deployed).
FALLBACK_ORIGIN: Final = "https://localhost"
DEFAULT_GITHUB_API_URL: Final = "https://api.github.com"
DEFAULT_GIT_BASE_URL: Final = "https://github.com"

# --- agent host ---
AGENT_HOME: Final = "/var/lib/aipm"
AGENT_WORK_DIR: Final = "/var/lib/aipm/work"
AGENT_ENV_FILE: Final = "/etc/aipm/agent.env"
BOOTSTRAP_ENV_FILE: Final = "/etc/aipm/bootstrap.env"
HOST_FILES_TARGET: Final = "/opt/aipm/host"
AGENT_LOG_FILE: Final = "/var/log/aipm/agent.log"
AGENT_SERVICE: Final = "aipm-agent.service"
HOST_FILES: Final = (
    "bootstrap.sh",
    AGENT_SERVICE,
    "aipm-agent.logrotate",
    "aipm-cli.nft",
    "aipm-cli-proxy.conf",
    "install-kiro.sh",
    "aipm-drain.sh",
    "aipm-drain.service",
)
AGENT_ROOT_VOLUME_GB: Final = 30
# The coding CLI's own user on the host, bubblewrap where the sandbox runs it, the CLI's egress proxy.
CLI_USER: Final = "aipm-cli"
BWRAP_PATH: Final = "/usr/bin/bwrap"
CLI_PROXY_PORT: Final = 3128
# The model service the Kiro CLI talks to, the only egress its user gets (through the proxy; cliDomains).
DEFAULT_CLI_DOMAINS: Final = (
    ".kiro.dev",
    "q.us-east-1.amazonaws.com",
    "codewhisperer.us-east-1.amazonaws.com",
)
# How long CloudFormation waits for a host's success signal (boot, packages, venv, Kiro, health check).
SIGNAL_TIMEOUT_MINUTES: Final = 20
# How long a terminating host may drain (the lifecycle hook's heartbeat timeout): the agent's own drain
# timeout plus its publisher and a margin.
DRAIN_HOOK_TIMEOUT_S: Final = 300
USER_DATA_LIMIT_BYTES: Final = 16 * 1024
ASG_COOLDOWN_S: Final = 300

# --- web console (S3 + CloudFront) ---
CONSOLE_INDEX: Final = "index.html"
CONSOLE_CONFIG: Final = "config.json"  # {"apiUrl": ...}, generated at deploy time (aipm/web/app.js reads it)
# Files of aipm/web/ that are not published (the local stack writes its own config.json there).
CONSOLE_EXCLUDE: Final = (CONSOLE_CONFIG, "*.py", "__pycache__", ".*")
CONSOLE_README: Final = "README.txt"  # the README, uploaded next to the console: its footer links it
CONSOLE_HSTS_DAYS: Final = 730
# The page's own meta CSP allows any https: API; the header narrows it to API Gateway in the stack's region.
CONSOLE_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' https://*.execute-api.{region}.{url_suffix} "
    "https://*.auth.{region}.amazoncognito.com; "
    "base-uri 'none'; form-action 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)
# The attach terminal's page (aipm/web/terminal.html): xterm.js's renderer sets inline styles
# (xtermjs/xterm.js#4445), and its WebSocket is the agent's attach port forwarded to loopback
# (`aipm ops tunnel`).
CONSOLE_TERMINAL_PATH: Final = "/terminal.html"
CONSOLE_TERMINAL_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws://127.0.0.1:* ws://localhost:*; "
    "base-uri 'none'; form-action 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)
CONSOLE_PERMISSIONS_POLICY: Final = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- stack outputs (aipm/cli/ops.py reads the Agent*, Api*, UserPool*, Console* ones by these names) ---
OUT_API_URL: Final = "ApiUrl"
OUT_USER_POOL: Final = "UserPoolId"
OUT_USER_POOL_CLIENT: Final = "UserPoolClientId"
OUT_SIGN_IN_DOMAIN: Final = "SignInDomain"
OUT_INSTANCE: Final = "AgentInstanceId"
OUT_GROUP: Final = "AgentAutoScalingGroupName"
OUT_POOL_PORT: Final = "AgentPoolPort"
OUT_PROCESSOR_PORT: Final = "AgentProcessorPort"
OUT_ATTACH_PORT: Final = "AgentAttachPort"
OUT_LOG_GROUP: Final = "AgentLogGroup"
OUT_CONSOLE_URL: Final = "ConsoleUrl"
OUT_AGENT_TOKEN_SECRET: Final = "AgentTokenSecretArn"  # noqa: S105 - an output key, not a secret

# --- monitoring ---
LOG_RETENTION_DAYS: Final = 30
STUCK_CHECK_MINUTES: Final = 5
STUCK_GRACE_MINUTES: Final = 10
HEARTBEAT_ALARM_MINUTES: Final = 5
HEARTBEAT_INTERVAL_S: Final = 15


def ssm_parameter_names(stage: str) -> dict[str, str]:
    """SSM parameter names of the agent's endpoint and ports for a stage."""
    base = f"/{PROJECT}/{stage}/agent"
    return {
        "endpoint": f"{base}/endpoint",
        "pool-port": f"{base}/pool-port",
        "processor-port": f"{base}/processor-port",
        "attach-port": f"{base}/attach-port",
    }
