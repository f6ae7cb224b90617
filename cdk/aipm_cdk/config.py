"""Environment-specific settings, read from CDK context (`cdk.json` or `-c key=value`) and validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aws_cdk.aws_logs import RetentionDays
from constructs import Node

from cdk.aipm_cdk import constants as c

AgentSubnet = Literal["public", "private"]
# `needed`: the interface endpoints the chosen network needs (the dispatcher's SSM and Secrets Manager calls
# when its subnets have no NAT); `all`: also those that keep the host's AWS traffic private; `none`.
VpcEndpoints = Literal["needed", "all", "none"]
CliProfile = Literal["kiro-acp", "kiro-interactive", "kiro-headless", "generic", "emulator"]

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_VERSION = re.compile(r"^(\d+\.\d+\.\d+)?$")
_DOMAIN = re.compile(r"^\.?[a-z0-9-]+(\.[a-z0-9-]+)+$")
_API_ID = re.compile(r"^[a-z0-9]{6,12}$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EMAIL = re.compile(r"^[^@\s']+@[^@\s']+\.[^@\s']+$")
# CloudWatch Logs accepts only these retention periods (days).
RETENTION: dict[int, RetentionDays] = {
    1: RetentionDays.ONE_DAY,
    3: RetentionDays.THREE_DAYS,
    5: RetentionDays.FIVE_DAYS,
    7: RetentionDays.ONE_WEEK,
    14: RetentionDays.TWO_WEEKS,
    30: RetentionDays.ONE_MONTH,
    60: RetentionDays.TWO_MONTHS,
    90: RetentionDays.THREE_MONTHS,
    180: RetentionDays.SIX_MONTHS,
    365: RetentionDays.ONE_YEAR,
    731: RetentionDays.TWO_YEARS,
    1827: RetentionDays.FIVE_YEARS,
}

# Every context key the app reads, with its default. README.md documents each one.
DEFAULTS: dict[str, Any] = {
    "stage": "prod",
    "frontendOrigins": "",
    "aipmRestApiId": "",
    "aipmRootResourceId": "",
    "aipmApiResourceId": "",
    "aipmRestApiStage": "prod",
    "console": True,
    "githubOwners": "",
    "githubApiUrl": c.DEFAULT_GITHUB_API_URL,
    "githubBaseUrl": c.DEFAULT_GIT_BASE_URL,
    "instanceType": "t3.medium",
    "poolSize": 2,
    "cliProfile": "kiro-acp",
    "jobTimeoutSeconds": 1800,
    "agentAutoScaling": False,
    "agentHostCount": 1,
    "vpcId": "",
    "maxAzs": 2,
    "endpointAzs": 1,
    "natGateways": 0,
    "agentSubnet": "public",
    "pinAmi": False,
    "vpcEndpoints": "needed",
    "kiroInstall": True,
    "kiroVersion": "",
    "cliDomains": ",".join(c.DEFAULT_CLI_DOMAINS),
    "powertoolsLayerVersion": c.POWERTOOLS_LAYER_VERSION,
    "powertoolsLayerArn": "",
    "apiWaf": True,
    "wafRateLimitPer5Min": c.WAF_RATE_LIMIT_PER_5_MIN,
    "apiCloudWatchRole": True,
    "alarmEmail": "",
    "logRetentionDays": c.LOG_RETENTION_DAYS,
    "retainData": True,
}


class ConfigError(ValueError):
    """A context value is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class AipmConfig:
    """The validated deployment settings (see DEFAULTS for the context keys)."""

    stage: str = DEFAULTS["stage"]
    frontend_origins: tuple[str, ...] = ()
    aipm_rest_api_id: str = DEFAULTS["aipmRestApiId"]
    aipm_root_resource_id: str = DEFAULTS["aipmRootResourceId"]
    aipm_api_resource_id: str = DEFAULTS["aipmApiResourceId"]
    aipm_rest_api_stage: str = DEFAULTS["aipmRestApiStage"]
    console: bool = DEFAULTS["console"]
    github_owners: tuple[str, ...] = ()
    github_api_url: str = DEFAULTS["githubApiUrl"]
    github_base_url: str = DEFAULTS["githubBaseUrl"]
    instance_type: str = DEFAULTS["instanceType"]
    pool_size: int = DEFAULTS["poolSize"]
    cli_profile: CliProfile = DEFAULTS["cliProfile"]
    job_timeout_s: int = DEFAULTS["jobTimeoutSeconds"]
    agent_auto_scaling: bool = DEFAULTS["agentAutoScaling"]
    agent_host_count: int = DEFAULTS["agentHostCount"]
    vpc_id: str = DEFAULTS["vpcId"]
    max_azs: int = DEFAULTS["maxAzs"]
    nat_gateways: int = DEFAULTS["natGateways"]
    agent_subnet: AgentSubnet = DEFAULTS["agentSubnet"]
    pin_ami: bool = DEFAULTS["pinAmi"]
    vpc_endpoints: VpcEndpoints = DEFAULTS["vpcEndpoints"]
    endpoint_azs: int = DEFAULTS["endpointAzs"]
    kiro_install: bool = DEFAULTS["kiroInstall"]
    kiro_version: str = DEFAULTS["kiroVersion"]
    cli_domains: tuple[str, ...] = c.DEFAULT_CLI_DOMAINS
    powertools_layer_version: int = DEFAULTS["powertoolsLayerVersion"]
    powertools_layer_arn: str = DEFAULTS["powertoolsLayerArn"]
    api_waf: bool = DEFAULTS["apiWaf"]
    waf_rate_limit_per_5_min: int = DEFAULTS["wafRateLimitPer5Min"]
    api_cloudwatch_role: bool = DEFAULTS["apiCloudWatchRole"]
    alarm_email: str = DEFAULTS["alarmEmail"]
    log_retention_days: int = DEFAULTS["logRetentionDays"]
    retain_data: bool = DEFAULTS["retainData"]

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (bool(_STAGE.match(self.stage)), "stage: lowercase letters, digits, '-', at most 16 characters"),
            (
                all(_ORIGIN.match(o) for o in self.frontend_origins),
                "frontendOrigins: origins like https://app.example.com",
            ),
            (all(_OWNER.match(o) for o in self.github_owners), "githubOwners: GitHub owner names"),
            (self.github_api_url.startswith("https://"), "githubApiUrl: an https:// URL"),
            (self.github_base_url.startswith("https://"), "githubBaseUrl: an https:// URL"),
            (
                not self.aipm_rest_api_id
                or all(
                    _API_ID.match(v)
                    for v in (self.aipm_rest_api_id, self.aipm_root_resource_id, self.aipm_api_resource_id)
                ),
                "aipmRestApiId, aipmRootResourceId, aipmApiResourceId: API Gateway ids (all three together)",
            ),
            (bool(_STAGE_NAME.match(self.aipm_rest_api_stage)), "aipmRestApiStage: a stage name"),
            (1 <= self.pool_size <= 16, "poolSize: 1..16"),
            (self.job_timeout_s > 0, "jobTimeoutSeconds: > 0"),
            (1 <= self.agent_host_count <= 20, "agentHostCount: 1..20"),
            (
                self.agent_auto_scaling or self.agent_host_count == 1,
                "agentHostCount > 1 needs agentAutoScaling",
            ),
            (not self.vpc_id or bool(_VPC_ID.match(self.vpc_id)), "vpcId: vpc-xxxxxxxx"),
            (1 <= self.max_azs <= 6, "maxAzs: 1..6"),
            (1 <= self.endpoint_azs <= self.max_azs, "endpointAzs: 1..maxAzs"),
            (
                self.vpc_endpoints != "none" or self.nat_gateways > 0 or bool(self.vpc_id),
                "vpcEndpoints=none needs natGateways >= 1 or an existing vpcId: the dispatcher in the "
                "isolated subnets would reach neither SSM nor Secrets Manager",
            ),
            (0 <= self.nat_gateways <= self.max_azs, "natGateways: 0..maxAzs"),
            (
                self.agent_subnet == "public" or self.nat_gateways > 0 or bool(self.vpc_id),
                "agentSubnet=private needs natGateways >= 1 (the agent must reach GitHub)",
            ),
            (bool(_VERSION.match(self.kiro_version)), "kiroVersion: a version like 1.2.3, or empty"),
            (
                bool(self.cli_domains) and all(_DOMAIN.match(d) for d in self.cli_domains),
                "cliDomains: domain names (a leading '.' takes the subdomains)",
            ),
            (self.powertools_layer_version > 0, "powertoolsLayerVersion: > 0"),
            (
                c.WAF_RATE_LIMIT_MIN <= self.waf_rate_limit_per_5_min <= c.WAF_RATE_LIMIT_MAX,
                f"wafRateLimitPer5Min: {c.WAF_RATE_LIMIT_MIN}..{c.WAF_RATE_LIMIT_MAX} requests per IP in 5 "
                "minutes (AWS WAF's range)",
            ),
            (not self.alarm_email or bool(_EMAIL.match(self.alarm_email)), "alarmEmail: an e-mail address"),
            (self.log_retention_days in RETENTION, f"logRetentionDays: one of {sorted(RETENTION)}"),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ConfigError("invalid context: " + "; ".join(errors))

    @property
    def log_retention(self) -> RetentionDays:
        """The CloudWatch Logs retention for every log group of the stack."""
        return RETENTION[self.log_retention_days]

    @classmethod
    def from_context(cls, node: Node) -> AipmConfig:
        """Build from the construct tree's context; unknown values fall back to DEFAULTS."""

        def get(key: str) -> Any:
            value = node.try_get_context(key)
            return DEFAULTS[key] if value is None else value

        return cls(
            stage=str(get("stage")),
            frontend_origins=tuple(o.rstrip("/") for o in _as_list(get("frontendOrigins"))),
            aipm_rest_api_id=str(get("aipmRestApiId")),
            aipm_root_resource_id=str(get("aipmRootResourceId")),
            aipm_api_resource_id=str(get("aipmApiResourceId")),
            aipm_rest_api_stage=str(get("aipmRestApiStage")),
            console=_as_bool("console", get("console")),
            github_owners=_as_list(get("githubOwners")),
            github_api_url=str(get("githubApiUrl")).rstrip("/"),
            github_base_url=str(get("githubBaseUrl")).rstrip("/"),
            instance_type=str(get("instanceType")),
            pool_size=_as_int("poolSize", get("poolSize")),
            cli_profile=_as_choice("cliProfile", get("cliProfile"), get_args(CliProfile)),
            job_timeout_s=_as_int("jobTimeoutSeconds", get("jobTimeoutSeconds")),
            agent_auto_scaling=_as_bool("agentAutoScaling", get("agentAutoScaling")),
            agent_host_count=_as_int("agentHostCount", get("agentHostCount")),
            vpc_id=str(get("vpcId")),
            max_azs=_as_int("maxAzs", get("maxAzs")),
            nat_gateways=_as_int("natGateways", get("natGateways")),
            agent_subnet=_as_choice("agentSubnet", get("agentSubnet"), get_args(AgentSubnet)),
            pin_ami=_as_bool("pinAmi", get("pinAmi")),
            vpc_endpoints=_as_endpoints(get("vpcEndpoints")),
            endpoint_azs=_as_int("endpointAzs", get("endpointAzs")),
            kiro_install=_as_bool("kiroInstall", get("kiroInstall")),
            kiro_version=str(get("kiroVersion")),
            cli_domains=_as_list(get("cliDomains")),
            powertools_layer_version=_as_int("powertoolsLayerVersion", get("powertoolsLayerVersion")),
            powertools_layer_arn=str(get("powertoolsLayerArn")),
            api_waf=_as_bool("apiWaf", get("apiWaf")),
            waf_rate_limit_per_5_min=_as_int("wafRateLimitPer5Min", get("wafRateLimitPer5Min")),
            api_cloudwatch_role=_as_bool("apiCloudWatchRole", get("apiCloudWatchRole")),
            alarm_email=str(get("alarmEmail")),
            log_retention_days=_as_int("logRetentionDays", get("logRetentionDays")),
            retain_data=_as_bool("retainData", get("retainData")),
        )


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"invalid context: {key}: expected true or false, got {value!r}")


def _as_endpoints(value: Any) -> VpcEndpoints:
    """`needed` | `all` | `none`; the older booleans mean `all` (true) and `none` (false)."""
    if isinstance(value, bool) or str(value).strip().lower() in ("true", "false"):
        return "all" if _as_bool("vpcEndpoints", value) else "none"
    choice: VpcEndpoints = _as_choice("vpcEndpoints", value, get_args(VpcEndpoints))
    return choice


def _as_int(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid context: {key}: expected an integer, got {value!r}") from None


def _as_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _as_choice(key: str, value: Any, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise ConfigError(f"invalid context: {key}: one of {', '.join(choices)}, got {value!r}")
    return value
