"""API: Cognito user pool for the frontend, the API Lambda, and the REST API in front of it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.functions import PythonFunction
from cdk.aipm_cdk.nag import acknowledge, logical_id
from cdk.aipm_cdk.storage import Storage

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
PUBLIC_REASON = (
    "GET /api/health (the liveness probe) and GET /api/openapi.json (the API's description) need no sign-in; "
    "they return no data beyond a status and the public route list, and are throttled and behind WAF like "
    "every other route."
)
WEBHOOK_REASON = (
    "POST /api/github/webhook is called by GitHub, which cannot sign in to Cognito: the Lambda authenticates "
    "each delivery by its X-Hub-Signature-256 (HMAC-SHA256 of the body under the webhook secret, compared in "
    "constant time before the body is read) and answers 401 to anything else; throttled and behind WAF like "
    "every other route."
)
# The answers API Gateway gives itself (before the Lambda runs), in the API's own error shape
# (lambda_src/errors.py: `{"error": <code>, "message": <text>}`). Only $context.error.messageString comes
# quoted in a gateway-response template (API Gateway developer guide), so it is the only variable used.
SIGN_IN_HINT = (
    "sign in: send Authorization: Bearer <ID token> from Cognito managed login (`aipm login`, the console, "
    "or the sign-in module for your frontend; README: Signing in)"
)
GATEWAY_ERRORS: dict[str, tuple[apigw.ResponseType, str, str | None]] = {
    # name: (response type, the API's error code, a fixed message; None = API Gateway's quoted message)
    "Unauthorized": (apigw.ResponseType.UNAUTHORIZED, "unauthenticated", SIGN_IN_HINT),
    "AccessDenied": (apigw.ResponseType.ACCESS_DENIED, "forbidden", None),
    "WafFiltered": (apigw.ResponseType.WAF_FILTERED, "forbidden", None),
    "Throttled": (apigw.ResponseType.THROTTLED, "throttled", None),
    "BadRequestBody": (apigw.ResponseType.BAD_REQUEST_BODY, "invalid_request", None),
    "BadRequestParameters": (apigw.ResponseType.BAD_REQUEST_PARAMETERS, "invalid_request", None),
    "Default4xx": (apigw.ResponseType.DEFAULT_4_XX, "bad_request", None),
    "Default5xx": (apigw.ResponseType.DEFAULT_5_XX, "gateway_error", None),
}
# The CLI's loopback redirect (aipm login; Cognito allows plain http only for localhost).
CLI_CALLBACK_URL = "http://localhost:8976/callback"


def gateway_template(code: str, message: str | None) -> str:
    """The JSON body of a gateway response: `{"error": code, "message": …}`."""
    text = json.dumps(message) if message is not None else "$context.error.messageString"
    return f'{{"error": {json.dumps(code)}, "message": {text}}}'


class Api(Construct):
    """REST API (Cognito authorizer, validation, throttling, access logs, tracing, CORS) → Lambda; the stack
    puts its stage behind the web ACL of `ApiFirewall` (firewall.py)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        storage: Storage,
        configuration: Configuration,
        layer: lambda_.ILayerVersion,
        allowed_origins: Sequence[str],
    ) -> None:
        """`allowed_origins`: the browser origins the API answers (CORS), which are also the sign-in
        callback and sign-out URLs (`<origin>/`); the stack gives the console's and `frontendOrigins`."""
        super().__init__(scope, construct_id)
        self.allowed_origins = list(allowed_origins)
        self._users(config)
        self.handler = PythonFunction(
            self,
            "Handler",
            config=config,
            layer=layer,
            handler=c.API_HANDLER,
            description="AIPM delegate API: validates, opens the PR, queues the job",
            environment={
                "RECORDS_TABLE": storage.records.table_name,
                "IDEMPOTENCY_TABLE": storage.idempotency.table_name,
                "GITHUB_SECRET_ID": configuration.github_secret.secret_arn,
                "GITHUB_WEBHOOK_SECRET_ID": configuration.webhook_secret.secret_arn,
                "GITHUB_API_URL": config.github_api_url,
                "ALLOWED_ORIGINS": ",".join(self.allowed_origins),
                "ALLOWED_OWNERS": ",".join(config.github_owners),
                "JOB_MAX_ATTEMPTS": str(c.JOB_MAX_ATTEMPTS),
                "RECORD_TTL_DAYS": str(c.RECORD_TTL_DAYS),
                "POWERTOOLS_SERVICE_NAME": "aipm-api",
            },
            memory_mb=c.API_MEMORY_MB,
            timeout_s=c.API_TIMEOUT_S,
        )
        storage.grant_records_to_service(self.handler.role)
        storage.idempotency.grant_read_write_data(self.handler.role)
        configuration.github_secret.grant_read(self.handler.role)
        configuration.webhook_secret.grant_read(self.handler.role)
        acknowledge(
            self.handler.role,
            "IAM5",
            "Queries on the records table's own GSIs (status-index, repo-index, kind-index): "
            "the '/index/*' suffix is scoped to this one table.",
            f"Resource::<{logical_id(storage.records)}.Arn>/index/*",
        )
        self._rest_api(config)

    def _users(self, config: AipmConfig) -> None:
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=f"{c.PROJECT}-{config.stage}",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=config.retain_data,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        # Managed login, authorization code + PKCE: a public client (no secret); Cognito checks the PKCE
        # code_verifier whenever the authorize request carried a code_challenge, as the console, the CLI
        # and the frontend module always do. Refresh tokens last 30 days and can be revoked (sign-out).
        urls = [f"{origin}/" for origin in self.allowed_origins]
        self.user_pool_client = self.user_pool.add_client(
            "Frontend",
            user_pool_client_name=f"{c.PROJECT}-{config.stage}-frontend",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
                callback_urls=[*urls, CLI_CALLBACK_URL],
                logout_urls=urls,
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            enable_token_revocation=True,
        )
        # The managed-login pages on a Cognito domain; the prefix must be unique in the region, hence the
        # account id (Cognito refuses prefixes containing "aws", "amazon" or "cognito").
        self.domain = self.user_pool.add_domain(
            "SignIn",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=f"{c.PROJECT}-{config.stage}-{Aws.ACCOUNT_ID}"
            ),
            managed_login_version=cognito.ManagedLoginVersion.NEWER_MANAGED_LOGIN,
        )
        # Managed login shows a client's pages only once a style is assigned to it: Cognito's own look.
        cognito.CfnManagedLoginBranding(
            self,
            "SignInStyle",
            user_pool_id=self.user_pool.user_pool_id,
            client_id=self.user_pool_client.user_pool_client_id,
            use_cognito_provided_values=True,
        )
        self.sign_in_url = self.domain.base_url()
        self.issuer = f"https://cognito-idp.{Aws.REGION}.{Aws.URL_SUFFIX}/{self.user_pool.user_pool_id}"

    def _rest_api(self, config: AipmConfig) -> None:
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{c.PROJECT}-{config.stage}",
            description="AIPM code delegation API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=config.api_cloudwatch_role,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=c.API_THROTTLE_RATE,
                throttling_burst_limit=c.API_THROTTLE_BURST,
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=self.allowed_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=ALLOWED_HEADERS,
                max_age=Duration.minutes(10),
            ),
        )
        if config.api_cloudwatch_role:
            acknowledge(
                self.rest_api,
                "IAM4",
                "AmazonAPIGatewayPushToCloudWatchLogs is the AWS-documented policy of the account-level role "
                "API Gateway uses to write execution logs to log groups it names itself.",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            )
        # A gateway response has one static header value: the one origin, or `*` for several (these
        # answers are errors that carry no data, and the API uses no cookies).
        only = self.allowed_origins[0] if len(self.allowed_origins) == 1 else "*"
        cors_headers = {
            "Access-Control-Allow-Origin": f"'{only}'",
            "Access-Control-Allow-Headers": "'" + ",".join(ALLOWED_HEADERS) + "'",
        }
        for name, (response_type, code, message) in GATEWAY_ERRORS.items():
            self.rest_api.add_gateway_response(
                name,
                type=response_type,
                response_headers=cors_headers,
                templates={"application/json": gateway_template(code, message)},
            )

        integration = apigw.LambdaIntegration(self.handler.function, proxy=True)
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[self.user_pool], results_cache_ttl=Duration.minutes(5)
        )
        params_validator = self.rest_api.add_request_validator(
            "ParamsValidator", validate_request_parameters=True
        )
        acknowledge(
            self.rest_api,
            "APIG2",
            "Parameters are validated at the edge; the body on purpose only by the Lambda, the one validator "
            "(a tolerant reader of the prototype frontend's request with its defaults, refusing in the API's "
            "error shape with the field named, which an API Gateway model cannot do).",
        )
        # No body model at the edge: the Lambda is the one validator of the body (a tolerant reader of the
        # prototype frontend's request, with its defaults; every refusal names the field in the API's shape).
        api = self.rest_api.root.add_resource(c.API_PREFIX)
        for public_path in c.PUBLIC_PATHS:
            public = api.add_resource(public_path).add_method(
                "GET", integration, request_validator=params_validator
            )
            acknowledge(public, "APIG4", PUBLIC_REASON)
            acknowledge(public, "COG4", PUBLIC_REASON)
        webhook: apigw.IResource = api
        for part in c.WEBHOOK_PATH:
            webhook = webhook.get_resource(part) or webhook.add_resource(part)
        self.webhook_method = webhook.add_method(
            "POST",
            integration,
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=params_validator,
        )
        acknowledge(self.webhook_method, "APIG4", WEBHOOK_REASON)
        acknowledge(self.webhook_method, "COG4", WEBHOOK_REASON)
        for path, verb in c.SIGNED_IN_ROUTES:
            resource: apigw.IResource = api
            for part in path:
                resource = resource.get_resource(part) or resource.add_resource(part)
            resource.add_method(
                verb,
                integration,
                authorizer=authorizer,
                authorization_type=apigw.AuthorizationType.COGNITO,
                request_validator=params_validator,
                request_parameters={"method.request.header.Idempotency-Key": False}
                if verb == "POST"
                else None,
            )
        # Every other route (jobs, cancel, retry, workers, OpenAPI document) goes to the same handler.
        api.add_resource("{proxy+}").add_method(
            "ANY",
            integration,
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.COGNITO,
            request_validator=params_validator,
        )
