"""API: authorizer on every method but health and CORS preflight, validation, stage settings, Lambda."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.api import CLI_CALLBACK_URL, GATEWAY_ERRORS, Api
from cdk.aipm_cdk.config import AipmConfig
from lambda_src.errors import InvalidBody, http_error
from tests.cdk.builders import as_list, parts, policy_statements, resources

ORIGIN = "https://aipm.example.com"
DEV_ORIGIN = "http://localhost:3000"


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
        allowed_origins=[ORIGIN, DEV_ORIGIN],
    )
    stack = Stack.of(api)
    ids = {
        "function": stack.resolve(api.handler.function.function_name)["Ref"],
        "role": stack.resolve(api.handler.role.role_name)["Ref"],
        "records": stack.resolve(p.storage.records.table_name)["Ref"],
        "idempotency": stack.resolve(p.storage.idempotency.table_name)["Ref"],
        "github_secret": stack.resolve(p.configuration.github_secret.secret_arn)["Ref"],
        "webhook_secret": stack.resolve(p.configuration.webhook_secret.secret_arn)["Ref"],
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
        public = {("/api/health", "GET"), ("/api/openapi.json", "GET"), ("/api/github/webhook", "POST")}
        if verb == "OPTIONS" or (path, verb) in public:
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


def test_the_lambda_is_the_one_validator_of_the_body() -> None:
    """No body model at the edge: the prototype frontend's body (extra fields, nulls, a missing branch name)
    must reach the Lambda, which applies the defaults and names any refused field (issue 11)."""
    template, _ = api_template()
    template.resource_count_is("AWS::ApiGateway::Model", 0)
    validators = resources(template, "AWS::ApiGateway::RequestValidator").values()
    assert not any(v["Properties"].get("ValidateRequestBody") for v in validators)
    for path, verb, props in methods(template):
        if verb != "OPTIONS":
            assert "RequestValidatorId" in props, (path, verb)
            assert "RequestModels" not in props, (path, verb)


def render(template: str, message: str) -> Any:
    """What API Gateway sends for a gateway-response template: $context.error.messageString is the only
    variable it substitutes already quoted (developer guide); any other variable would render raw."""
    assert "$" not in template.replace("$context.error.messageString", ""), template
    return json.loads(template.replace("$context.error.messageString", json.dumps(message)))


def test_gateway_responses_are_valid_json_in_the_apis_error_shape() -> None:
    template, _ = api_template()
    own = http_error(InvalidBody("taskTitle: is required", field="taskTitle")).body
    codes = {name: code for name, (_type, code, _msg) in GATEWAY_ERRORS.items()}
    found = resources(template, "AWS::ApiGateway::GatewayResponse").values()
    assert {r["Properties"]["ResponseType"] for r in found} >= {"UNAUTHORIZED", "DEFAULT_4XX", "DEFAULT_5XX"}
    for response in found:
        props = response["Properties"]
        body = render(props["ResponseTemplates"]["application/json"], 'Invalid "request" body')
        assert set(body) == {"error", "message"} and set(body) <= set(own)
        assert body["error"] in codes.values() and re.fullmatch(r"[a-z_]+", body["error"])
        if props["ResponseType"] == "UNAUTHORIZED":
            assert body["error"] == "unauthenticated" and "sign in" in body["message"]
        elif props["ResponseType"] == "BAD_REQUEST_BODY":
            assert body == {"error": "invalid_request", "message": 'Invalid "request" body'}


def test_sign_in_is_cognito_managed_login_with_code_and_pkce() -> None:
    template, _ = api_template()
    (client,) = [c["Properties"] for c in resources(template, "AWS::Cognito::UserPoolClient").values()]
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlows"] == ["code"] and client["AllowedOAuthFlowsUserPoolClient"] is True
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email", "profile"}
    assert client["CallbackURLs"] == [f"{ORIGIN}/", f"{DEV_ORIGIN}/", CLI_CALLBACK_URL]
    assert client["LogoutURLs"] == [f"{ORIGIN}/", f"{DEV_ORIGIN}/"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert client["EnableTokenRevocation"] is True
    assert (
        client["RefreshTokenValidity"] == 43200 and client["TokenValidityUnits"]["RefreshToken"] == "minutes"
    )
    (domain,) = [d["Properties"] for d in resources(template, "AWS::Cognito::UserPoolDomain").values()]
    assert domain["ManagedLoginVersion"] == 2
    assert "aipm-prod-" in json.dumps(domain["Domain"])
    template.resource_count_is("AWS::Cognito::ManagedLoginBranding", 1)


def test_cors_for_every_origin_and_the_lambda_gets_the_list() -> None:
    template, ids = api_template()
    function = resources(template, "AWS::Lambda::Function")[ids["function"]]["Properties"]
    env = function["Environment"]["Variables"]
    assert env["ALLOWED_ORIGINS"] == f"{ORIGIN},{DEV_ORIGIN}"
    preflight = json.dumps([p for _path, verb, p in methods(template) if verb == "OPTIONS"])
    assert ORIGIN in preflight and DEV_ORIGIN in preflight


def test_public_and_signed_in_routes() -> None:
    template, _ = api_template()
    auth = {(path, verb): props["AuthorizationType"] for path, verb, props in methods(template)}
    assert auth[("/api/health", "GET")] == "NONE" and auth[("/api/openapi.json", "GET")] == "NONE"
    for route in (
        ("/api/personal-delegate", "POST"),
        ("/api/personal-delegate/status", "GET"),
        ("/api/delegate/personal", "POST"),
        ("/api/{proxy+}", "ANY"),
    ):
        assert auth[route] == "COGNITO_USER_POOLS", route


def test_stage_has_access_logs_tracing_throttling_and_execution_logs() -> None:
    template, _ = api_template()
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"] and "Format" in stage["AccessLogSetting"]
    settings = stage["MethodSettings"][0]
    assert settings["LoggingLevel"] == "INFO" and settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == c.API_THROTTLE_RATE
    assert settings["ThrottlingBurstLimit"] == c.API_THROTTLE_BURST


def test_cors_headers_of_preflights_and_gateway_responses() -> None:
    template, _ = api_template()
    allowed_headers = "'Authorization,Content-Type,Idempotency-Key'"
    preflights = 0
    for _path, verb, props in methods(template):
        if verb == "OPTIONS":
            preflights += 1
            headers = props["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
            assert headers["method.response.header.Access-Control-Allow-Headers"] == allowed_headers
    assert preflights
    for response in resources(template, "AWS::ApiGateway::GatewayResponse").values():
        params = response["Properties"]["ResponseParameters"]
        # Several origins: an error answer (no data, no cookies) carries `*`; one origin: that origin.
        assert params["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'"
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
        "GITHUB_WEBHOOK_SECRET_ID",
        "GITHUB_API_URL",
        "ALLOWED_ORIGINS",
        "ALLOWED_OWNERS",
        "JOB_MAX_ATTEMPTS",
        "RECORD_TTL_DAYS",
        "POWERTOOLS_SERVICE_NAME",
    }
    assert env["RECORDS_TABLE"] == {"Ref": ids["records"]}
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": ids["idempotency"]}
    assert env["GITHUB_SECRET_ID"] == {"Ref": ids["github_secret"]}
    assert env["ALLOWED_ORIGINS"] == f"{ORIGIN},{DEV_ORIGIN}" and env["ALLOWED_OWNERS"] == "acme,ebaejun"
    assert env["POWERTOOLS_SERVICE_NAME"] == "aipm-api"
    assert (env["JOB_MAX_ATTEMPTS"], env["RECORD_TTL_DAYS"], env["GITHUB_API_URL"]) == (
        "3",
        "90",
        "https://api.github.com",
    )


def test_lambda_role_is_scoped_to_its_tables_secrets_and_log_group() -> None:
    template, ids = api_template()
    for statement in policy_statements(template, ids["role"]):
        actions = as_list(statement["Action"])
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert all(a.startswith("xray:") for a in actions), statement
                continue
            text = str(resource)
            own = ("records", "idempotency", "github_secret", "webhook_secret")
            assert any(ids[k] in text for k in own) or ("ApiHandlerLogs" in text), statement
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


def test_the_github_webhook_route_has_no_authorizer_and_its_secret_is_read_only_by_the_api() -> None:
    """GitHub cannot sign in: the route is public at the edge and the Lambda checks X-Hub-Signature-256 with
    the webhook secret, which the API's role may read (and nothing more: no write, no other secret)."""
    template, ids = api_template()
    found = methods(template)
    [(verb, props)] = [(v, p) for path, v, p in found if path == "/api/github/webhook" and v != "OPTIONS"]
    assert verb == "POST" and props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
    assert props["Integration"]["Type"] == "AWS_PROXY"
    function = resources(template, "AWS::Lambda::Function")[ids["function"]]["Properties"]
    assert function["Environment"]["Variables"]["GITHUB_WEBHOOK_SECRET_ID"] == {"Ref": ids["webhook_secret"]}
    secret = resources(template, "AWS::SecretsManager::Secret")[ids["webhook_secret"]]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "secret"
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    on_secret = [
        s
        for s in policy_statements(template, ids["role"])
        if {"Ref": ids["webhook_secret"]} in as_list(s["Resource"])
    ]
    assert on_secret and all(
        set(as_list(s["Action"])) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        for s in on_secret
    )
