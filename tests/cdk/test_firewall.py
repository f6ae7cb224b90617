"""The API's web ACL (cdk/aipm_cdk/firewall.py) against the documented AWS rules: the association's ARN format
for an API Gateway stage, the managed rule groups with their body rules counting, the body limit that spares
GitHub's webhook deliveries, the configured rate limit, and logging to an `aws-waf-logs-` log group with the
secret headers redacted."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.firewall import (
    BODY_LIMIT_BYTES,
    COMMON_BODY_RULES,
    KNOWN_BAD_INPUTS_BODY_RULES,
    LOG_GROUP_PREFIX,
    REDACTED_HEADERS,
    ApiFirewall,
)
from lambda_src.handler import MAX_BODY_BYTES, MAX_WEBHOOK_BODY_BYTES, WEBHOOK_PATH
from tests.cdk.builders import bare_stack, resources
from tests.cdk.conftest import Synthesized

KB = 1024
MB = 1024 * KB
# AssociationConfig.RequestBody.<type>.DefaultSizeInspectionLimit → bytes (CloudFormation reference of
# AWS::WAFv2::WebACL RequestBodyAssociatedResourceTypeConfig); 16 KB when not set.
INSPECTION_LIMITS = {"KB_16": 16 * KB, "KB_32": 32 * KB, "KB_48": 48 * KB, "KB_64": 64 * KB}
# GitHub: "Payloads are capped at 25 MB" (docs.github.com, Webhook events and payloads).
GITHUB_MAX_PAYLOAD_BYTES = 25 * MB


@functools.cache
def firewall_template(stage: str = "prod", rate_limit: int = 1000) -> Template:
    """An ApiFirewall on a minimal REST API's stage, in a bare stack."""
    stack = bare_stack()
    api = apigw.RestApi(stack, "RestApi", deploy_options=apigw.StageOptions(stage_name=stage))
    api.root.add_method("GET")
    config = AipmConfig(stage=stage, waf_rate_limit_per_5_min=rate_limit, log_retention_days=14)
    ApiFirewall(stack, "Firewall", config=config, stage=api.deployment_stage)
    return Template.from_stack(stack)


def the(template: Template, resource_type: str) -> dict[str, Any]:
    [(_, resource)] = resources(template, resource_type).items()
    return resource


def rule(acl: dict[str, Any], name: str) -> dict[str, Any]:
    """The rule `name` of a web ACL's properties."""
    [found] = [r for r in acl["Rules"] if r["Name"] == name]
    return found


def render(value: Any, template: Template) -> str:
    """A string property as text: pseudo parameters as `<AWS::Region>`, a Ref to a resource as
    `<Type Ref>` (e.g. `<AWS::ApiGateway::Stage Ref>`), Fn::Join joined."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part, template) for part in parts)
    if "Ref" in value:
        name = value["Ref"]
        if name.startswith("AWS::"):
            return f"<{name}>"
        return f"<{template.to_json()['Resources'][name]['Type']} Ref>"
    raise AssertionError(f"unexpected intrinsic {value}")


# --- a small evaluator of the statement types the web ACL's own rules use (anything else fails the test) ---


@dataclass(frozen=True)
class Request:
    path: str
    body_bytes: int


def matches(statement: dict[str, Any], request: Request, inspection_limit: int) -> bool:
    """Whether a WAF statement matches the request, per the WAF Developer Guide: a body over the inspection
    limit is judged by the statement's OversizeHandling ("Oversize web request components")."""
    [(kind, spec)] = statement.items()
    if kind == "AndStatement":
        return all(matches(s, request, inspection_limit) for s in spec["Statements"])
    if kind == "OrStatement":
        return any(matches(s, request, inspection_limit) for s in spec["Statements"])
    if kind == "NotStatement":
        return not matches(spec["Statement"], request, inspection_limit)
    if kind == "ByteMatchStatement":
        assert spec["FieldToMatch"] == {"UriPath": {}}, spec
        assert spec["TextTransformations"] == [{"Priority": 0, "Type": "NONE"}], spec
        assert spec["PositionalConstraint"] == "EXACTLY", spec
        return request.path == spec["SearchString"]
    if kind == "SizeConstraintStatement":
        [(field, options)] = spec["FieldToMatch"].items()
        assert field == "Body", spec
        size = request.body_bytes
        if size > inspection_limit:
            handling = options.get("OversizeHandling", "CONTINUE")
            if handling != "CONTINUE":
                return bool(handling == "MATCH")
            size = inspection_limit
        compare = {"GT": size > spec["Size"], "GE": size >= spec["Size"], "LT": size < spec["Size"]}
        return compare[spec["ComparisonOperator"]]
    raise AssertionError(f"the test's evaluator does not know {kind}")


def test_the_association_names_the_api_stage_in_the_documented_arn_format() -> None:
    """CloudFormation AWS::WAFv2::WebACLAssociation: an API Gateway REST API stage is
    `arn:<partition>:apigateway:<region>::/restapis/<api-id>/stages/<stage-name>` (no account)."""
    template = firewall_template()
    association = the(template, "AWS::WAFv2::WebACLAssociation")["Properties"]
    assert render(association["ResourceArn"], template) == (
        "arn:<AWS::Partition>:apigateway:<AWS::Region>::/restapis/<AWS::ApiGateway::RestApi Ref>"
        "/stages/<AWS::ApiGateway::Stage Ref>"
    )
    [acl_id] = resources(template, "AWS::WAFv2::WebACL")
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert the(template, "AWS::WAFv2::WebACL")["Properties"]["Scope"] == "REGIONAL"


def test_managed_rule_groups_block_but_their_body_rules_only_count() -> None:
    """IP reputation, the common rule set and known bad inputs; their body rules match ordinary coding
    tasks and review text (HTML, <script>, URLs, ../, the metadata address, ${jndi:…}): those count."""
    acl = the(firewall_template(), "AWS::WAFv2::WebACL")["Properties"]
    groups = {r["Name"]: r for r in acl["Rules"] if "ManagedRuleGroupStatement" in r["Statement"]}
    assert list(groups) == [
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    ]
    documented = {
        "AWSManagedRulesAmazonIpReputationList": set(),
        "AWSManagedRulesCommonRuleSet": set(COMMON_BODY_RULES),
        "AWSManagedRulesKnownBadInputsRuleSet": set(KNOWN_BAD_INPUTS_BODY_RULES),
    }
    for name, group in groups.items():
        statement = group["Statement"]["ManagedRuleGroupStatement"]
        assert statement["VendorName"] == "AWS" and group["OverrideAction"] == {"None": {}}
        overrides = {o["Name"]: o["ActionToUse"] for o in statement.get("RuleActionOverrides", [])}
        assert set(overrides) == documented[name]
        assert all(action == {"Count": {}} for action in overrides.values())
        assert all(rule_name.endswith("_BODY") for rule_name in overrides)
    assert {"SizeRestrictions_BODY", "CrossSiteScripting_BODY"} <= documented["AWSManagedRulesCommonRuleSet"]


def test_the_body_limit_spares_the_github_webhook_and_matches_the_api_lambda() -> None:
    """Bodies over the Lambda's own limit (64 KB) are blocked on every path but the webhook's, where GitHub
    sends up to 25 MB; the limit is within what API Gateway forwards to WAF (AssociationConfig)."""
    template = firewall_template()
    acl = the(template, "AWS::WAFv2::WebACL")["Properties"]
    limit = INSPECTION_LIMITS[
        acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"]["DefaultSizeInspectionLimit"]
    ]
    assert BODY_LIMIT_BYTES == MAX_BODY_BYTES <= limit
    body_rule = rule(acl, "BodyOverApiLimit")
    assert body_rule["Action"] == {"Block": {}}

    def blocked(path: str, body_bytes: int) -> bool:
        return matches(body_rule["Statement"], Request(path, body_bytes), limit)

    webhook = f"/prod{WEBHOOK_PATH}"
    for body in (0, 8 * KB + 1, MAX_BODY_BYTES + 1, MAX_WEBHOOK_BODY_BYTES, GITHUB_MAX_PAYLOAD_BYTES):
        assert not blocked(webhook, body), body
        assert not blocked(WEBHOOK_PATH, body), body  # a custom domain mapped at its root
    for path in ("/prod/api/personal-delegate", "/prod/api/jobs/j1/retry", "/prod/api/github/webhook/x"):
        assert not blocked(path, 8 * KB + 1)  # the common rule set's 8 KB only counts
        assert not blocked(path, MAX_BODY_BYTES)
        assert blocked(path, MAX_BODY_BYTES + 1)
        assert blocked(path, GITHUB_MAX_PAYLOAD_BYTES)
    assert not blocked(webhook.upper(), 0) and blocked(webhook.upper(), MAX_BODY_BYTES + 1)


def test_the_webhook_exemption_follows_the_stage_name() -> None:
    acl = the(firewall_template(stage="dev"), "AWS::WAFv2::WebACL")["Properties"]
    statement = rule(acl, "BodyOverApiLimit")["Statement"]
    assert not matches(statement, Request(f"/dev{WEBHOOK_PATH}", 1 * MB), 64 * KB)
    assert matches(statement, Request(f"/prod{WEBHOOK_PATH}", 1 * MB), 64 * KB)


@pytest.mark.parametrize("limit", [10, 1000, 250_000])
def test_the_rate_limit_per_ip_is_the_configured_one(limit: int) -> None:
    acl = the(firewall_template(rate_limit=limit), "AWS::WAFv2::WebACL")["Properties"]
    rate = rule(acl, "RateLimitPerIp")
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": limit,
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": c.WAF_RATE_WINDOW_S,
    }
    assert c.WAF_RATE_WINDOW_S in (60, 120, 300, 600)  # the windows AWS WAF offers
    assert rate["Priority"] == max(r["Priority"] for r in acl["Rules"])
    assert len({r["Priority"] for r in acl["Rules"]}) == len(acl["Rules"])


def test_logging_goes_to_an_aws_waf_logs_group_with_the_secret_headers_redacted() -> None:
    """AWS::WAFv2::LoggingConfiguration: the destination's name must start with `aws-waf-logs-`; the log
    group's ARN is given without the `:*` suffix; the Cognito token and GitHub's signature stay out."""
    template = firewall_template()
    group_id, group = next(iter(resources(template, "AWS::Logs::LogGroup").items()))
    name = group["Properties"]["LogGroupName"]
    assert name == f"{LOG_GROUP_PREFIX}aipm-prod" and name.startswith("aws-waf-logs-")
    assert re.fullmatch(r"[A-Za-z0-9_./#-]{1,512}", name)
    assert group["Properties"]["RetentionInDays"] == 14
    logging = the(template, "AWS::WAFv2::LoggingConfiguration")
    props = logging["Properties"]
    [destination] = props["LogDestinationConfigs"]
    assert render(destination, template) == (
        f"arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{name}"
    )
    [acl_id] = resources(template, "AWS::WAFv2::WebACL")
    assert props["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert group_id in logging["DependsOn"]
    assert props["RedactedFields"] == [{"SingleHeader": {"Name": h}} for h in REDACTED_HEADERS]
    assert set(REDACTED_HEADERS) == {"authorization", "x-hub-signature-256"}


def test_the_deployed_stack_puts_its_own_api_stage_behind_the_web_acl(full_stack: Synthesized) -> None:
    """The real app (cdk-nag on): one web ACL on the API's `prod` stage, logged."""
    template = full_stack.template
    association = the(template, "AWS::WAFv2::WebACLAssociation")["Properties"]
    parts = association["ResourceArn"]["Fn::Join"][1]
    stage_id = parts[-1]["Ref"]
    stage = resources(template, "AWS::ApiGateway::Stage")[stage_id]["Properties"]
    assert stage["StageName"] == AipmConfig().stage
    assert stage["RestApiId"] == parts[-3]
    template.resource_count_is("AWS::WAFv2::LoggingConfiguration", 1)
    assert the(template, "AWS::WAFv2::WebACL")["Properties"]["Scope"] == "REGIONAL"
