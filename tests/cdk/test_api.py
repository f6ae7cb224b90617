"""API: authorizer on every method but health and CORS preflight, validation, stage settings, Lambda, WAF."""

from __future__ import annotations

import functools
from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.api import Api
from cdk.aipm_cdk.config import AipmConfig
from tests.cdk.builders import as_list, parts, policy_statements, resources

ORIGIN = "https://aipm.example.com"


@functools.cache
def api_template() -> tuple[Template, dict[str, Any]]:
    """The Api construct (with its dependencies) in a bare stack, and the logical ids worth knowing."""
    p = parts(AipmConfig(github_owners=("acme", "ebaejun")))
    api = Api(
        p.stack,
        "Api",
        config=p.config,
        storage=p.storage,
        configuration=p.configuration,
        layer=p.layer,
        allowed_origin=ORIGIN,
    )
    stack = Stack.of(api)
    ids = {
        "function": stack.resolve(api.handler.function.function_name)["Ref"],
        "role": stack.resolve(api.handler.role.role_name)["Ref"],
        "records": stack.resolve(p.storage.records.table_name)["Ref"],
        "idempotency": stack.resolve(p.storage.idempotency.table_name)["Ref"],
        "github_secret": stack.resolve(p.configuration.github_secret.secret_arn)["Ref"],
    }
    return Template.from_stack(p.stack), ids


def paths(template: Template) -> dict[str, str]:
    """Logical id of each API resource → its full path."""
    found = resources(template, "AWS::ApiGateway::Resource")
    result: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        props = found[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{props['PathPart']}"

    for logical_id in found:
        result[logical_id] = path_of(logical_id)
    return result


def methods(template: Template) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, HTTP method, properties) of every method."""
    by_id = paths(template)
    found = []
    for method in resources(template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource = props["ResourceId"]
        path = by_id[resource["Ref"]] if "Ref" in resource else "/"
        found.append((path, props["HttpMethod"], props))
    return found


def test_authorizer_on_every_method_except_health_and_preflight() -> None:
    template, _ = api_template()
    template.has_resource_properties("AWS::ApiGateway::Authorizer", {"Type": "COGNITO_USER_POOLS"})
    seen = set()
    for path, verb, props in methods(template):
        seen.add((path, verb))
        if verb == "OPTIONS" or (path, verb) == ("/api/health", "GET"):
            assert props["AuthorizationType"] == "NONE", (path, verb)
        else:
            assert props["AuthorizationType"] == "COGNITO_USER_POOLS", (path, verb)
            assert "Ref" in props["AuthorizerId"]
    assert {
        ("/api/personal-delegate", "POST"),
        ("/api/delegate/personal", "POST"),
        ("/api/{proxy+}", "ANY"),
        ("/api/health", "GET"),
    } <= seen


def test_delegate_routes_validate_the_body() -> None:
    template, _ = api_template()
    model = next(iter(resources(template, "AWS::ApiGateway::Model").values()))["Properties"]
    assert set(model["Schema"]["required"]) == {
        "owner",
        "repo",
        "branchName",
        "taskTitle",
        "objective",
        "prTitle",
    }
    validators = resources(template, "AWS::ApiGateway::RequestValidator")
    body_validators = {k for k, v in validators.items() if v["Properties"].get("ValidateRequestBody")}
    delegate = [p for path, verb, p in methods(template) if verb == "POST"]
    assert len(delegate) == 2
    for props in delegate:
        assert props["RequestValidatorId"]["Ref"] in body_validators
        assert "application/json" in props["RequestModels"]
    for path, verb, props in methods(template):
        if verb != "OPTIONS":
            assert "RequestValidatorId" in props, (path, verb)


def test_stage_has_access_logs_tracing_throttling_and_execution_logs() -> None:
    template, _ = api_template()
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"] and "Format" in stage["AccessLogSetting"]
    settings = stage["MethodSettings"][0]
    assert settings["LoggingLevel"] == "INFO" and settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == c.API_THROTTLE_RATE
    assert settings["ThrottlingBurstLimit"] == c.API_THROTTLE_BURST


def test_cors_only_for_the_given_origin_with_the_console_headers() -> None:
    template, _ = api_template()
    allowed_headers = "'Authorization,Content-Type,Idempotency-Key'"
    preflights = 0
    for _path, verb, props in methods(template):
        if verb == "OPTIONS":
            preflights += 1
            headers = props["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
            assert headers["method.response.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"
            assert headers["method.response.header.Access-Control-Allow-Headers"] == allowed_headers
    assert preflights
    for response in resources(template, "AWS::ApiGateway::GatewayResponse").values():
        params = response["Properties"]["ResponseParameters"]
        assert params["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"
        assert params["gatewayresponse.header.Access-Control-Allow-Headers"] == allowed_headers


def test_lambda_runtime_layer_and_environment() -> None:
    template, ids = api_template()
    function = resources(template, "AWS::Lambda::Function")[ids["function"]]["Properties"]
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == "lambda_src.handler.lambda_handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    layer = function["Layers"][0]["Fn::Join"][1]
    assert (
        layer[0] == "arn:"
        and layer[2] == ":lambda:"
        and layer[4]
        == (
            f":{c.POWERTOOLS_LAYER_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:{c.POWERTOOLS_LAYER_VERSION}"
        )
    )
    env = function["Environment"]["Variables"]
    assert set(env) == {
        "RECORDS_TABLE",
        "IDEMPOTENCY_TABLE",
        "GITHUB_SECRET_ID",
        "GITHUB_API_URL",
        "ALLOWED_ORIGIN",
        "ALLOWED_OWNERS",
        "JOB_MAX_ATTEMPTS",
        "RECORD_TTL_DAYS",
        "POWERTOOLS_SERVICE_NAME",
    }
    assert env["RECORDS_TABLE"] == {"Ref": ids["records"]}
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": ids["idempotency"]}
    assert env["GITHUB_SECRET_ID"] == {"Ref": ids["github_secret"]}
    assert env["ALLOWED_ORIGIN"] == ORIGIN and env["ALLOWED_OWNERS"] == "acme,ebaejun"
    assert env["POWERTOOLS_SERVICE_NAME"] == "aipm-api"
    assert (env["JOB_MAX_ATTEMPTS"], env["RECORD_TTL_DAYS"], env["GITHUB_API_URL"]) == (
        "3",
        "90",
        "https://api.github.com",
    )


def test_lambda_role_is_scoped_to_its_tables_secret_and_log_group() -> None:
    template, ids = api_template()
    for statement in policy_statements(template, ids["role"]):
        actions = as_list(statement["Action"])
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert all(a.startswith("xray:") for a in actions), statement
                continue
            text = str(resource)
            assert any(ids[k] in text for k in ("records", "idempotency", "github_secret")) or (
                "ApiHandlerLogs" in text
            ), statement
        assert not any(a.endswith(":*") for a in actions), statement


def test_user_pool_requires_mfa_and_admin_created_users() -> None:
    template, _ = api_template()
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "MfaConfiguration": "ON",
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "UserPoolTier": "PLUS",
        },
    )
    template.has_resource_properties("AWS::Cognito::UserPoolClient", {"GenerateSecret": False})


def test_waf_protects_the_stage() -> None:
    template, _ = api_template()
    acl = next(iter(resources(template, "AWS::WAFv2::WebACL").values()))["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert [r["Name"] for r in acl["Rules"]] == [
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "RateLimitPerIp",
    ]
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
