"""Context parsing and validation (no synthesis)."""

from __future__ import annotations

import re

import pytest
from aws_cdk import App

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import DEFAULTS, AipmConfig, ConfigError


def from_context(**context: object) -> AipmConfig:
    return AipmConfig.from_context(App(context=dict(context)).node)


def test_defaults_when_no_context() -> None:
    config = from_context()
    assert config == AipmConfig()
    assert config.stage == DEFAULTS["stage"]
    assert config.github_owners == ()
    assert config.kiro_install and config.kiro_version == ""
    assert config.cli_domains == tuple(DEFAULTS["cliDomains"].split(","))
    assert not config.agent_auto_scaling and config.agent_host_count == 1


def test_cli_strings_are_parsed() -> None:
    """`-c key=value` gives strings: booleans, integers and comma lists are converted."""
    config = from_context(
        githubOwners="ebaejun, acme",
        poolSize="4",
        agentAutoScaling="true",
        agentHostCount="3",
        kiroInstall="false",
        frontendOrigins="https://app.example.com/, http://localhost:3000",
        vpcEndpoints="all",
    )
    assert config.github_owners == ("ebaejun", "acme")
    assert config.pool_size == 4
    assert config.agent_auto_scaling and config.agent_host_count == 3
    assert not config.kiro_install  # user-data skips the install
    assert config.frontend_origins == ("https://app.example.com", "http://localhost:3000")
    assert config.vpc_endpoints == "all"
    assert from_context(vpcEndpoints="true").vpc_endpoints == "all"
    assert from_context(natGateways="1", vpcEndpoints="false").vpc_endpoints == "none"


def test_the_waf_rate_limit_takes_aws_wafs_whole_range() -> None:
    """AWS WAF accepts 10 requests per evaluation window at least (WAF Developer Guide, "Rate-based rule
    high-level settings") and 2,000,000,000 at most (CloudFormation RateBasedStatement.Limit)."""
    assert from_context().waf_rate_limit_per_5_min == c.WAF_RATE_LIMIT_PER_5_MIN == 1000
    assert from_context(wafRateLimitPer5Min="10").waf_rate_limit_per_5_min == 10
    assert from_context(wafRateLimitPer5Min=2_000_000_000).waf_rate_limit_per_5_min == 2_000_000_000


def test_json_types_from_cdk_json() -> None:
    config = from_context(githubOwners=["acme"], poolSize=3, retainData=False)
    assert config.github_owners == ("acme",)
    assert config.pool_size == 3
    assert not config.retain_data


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"stage": "Prod!"}, "stage"),
        ({"frontendOrigins": "app.example.com"}, "frontendOrigins"),
        ({"vpcEndpoints": "some"}, "vpcEndpoints"),
        ({"vpcEndpoints": "none"}, "vpcEndpoints"),
        ({"endpointAzs": "3"}, "endpointAzs"),
        ({"githubOwners": "bad owner"}, "githubOwners"),
        ({"poolSize": "0"}, "poolSize"),
        ({"poolSize": "many"}, "poolSize"),
        ({"agentHostCount": "2"}, "agentAutoScaling"),
        ({"vpcId": "vpc-nope"}, "vpcId"),
        ({"agentSubnet": "private"}, "natGateways"),
        ({"agentSubnet": "dmz"}, "agentSubnet"),
        ({"cliProfile": "vim"}, "cliProfile"),
        ({"kiroVersion": "latest; rm -rf /"}, "kiroVersion"),
        ({"cliDomains": "evil domain"}, "cliDomains"),
        ({"logRetentionDays": "10"}, "logRetentionDays"),
        ({"alarmEmail": "ops"}, "alarmEmail"),
        ({"apiWaf": "maybe"}, "apiWaf"),
        ({"wafRateLimitPer5Min": "9"}, "wafRateLimitPer5Min"),
        ({"wafRateLimitPer5Min": "2000000001"}, "wafRateLimitPer5Min"),
        ({"wafRateLimitPer5Min": "lots"}, "wafRateLimitPer5Min"),
        ({"console": "maybe"}, "console"),
    ],
)
def test_invalid_context_names_the_key(context: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_context(**context)


def test_private_agent_subnet_with_nat_or_existing_vpc() -> None:
    assert from_context(agentSubnet="private", natGateways="1").agent_subnet == "private"
    assert from_context(agentSubnet="private", vpcId="vpc-0123456789abcdef0").vpc_id


def test_console_and_frontend_origins() -> None:
    """The console is on by default; frontendOrigins adds origins (a JSON list from cdk.json works too)."""
    assert from_context().console and from_context().frontend_origins == ()
    assert not from_context(console="false").console
    assert from_context(frontendOrigins=["https://a.example.com"]).frontend_origins == (
        "https://a.example.com",
    )


def test_every_context_key_is_documented() -> None:
    """cdk/README.md's context table lists exactly the keys the app reads."""
    readme = (c.REPO_ROOT / "cdk" / "README.md").read_text()
    table = readme.split("## Context keys", 1)[1].split("\n## ", 1)[0]
    documented = {
        key
        for line in table.splitlines()
        if line.startswith("| `")
        for key in re.findall(r"`([A-Za-z][A-Za-z0-9]*)`", line.split("|")[1])
    }
    assert documented == set(DEFAULTS)
