"""API: Cognito user pool for the frontend, the API Lambda, and the REST API in front of it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.functions import PythonFunction
from cdk.aipm_cdk.nag import acknowledge, logical_id
from cdk.aipm_cdk.storage import Storage

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
# Structural check at the edge; the Lambda enforces every length and pattern and names the field.
DELEGATE_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="DelegateRequest",
    type=apigw.JsonSchemaType.OBJECT,
    required=["owner", "repo", "branchName", "taskTitle", "objective", "prTitle"],
    properties={
        **{
            name: apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1)
            for name in ("owner", "repo", "branchName", "taskTitle", "objective", "prTitle", "baseBranch")
        },
        "constraints": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING),
        "acceptanceCriteria": apigw.JsonSchema(
            type=[apigw.JsonSchemaType.ARRAY, apigw.JsonSchemaType.STRING],
            items=apigw.JsonSchema(type=apigw.JsonSchemaType.STRING),
        ),
    },
)
HEALTH_REASON = (
    "GET /api/health is the unauthenticated liveness probe; it returns no data beyond a status and is "
    "throttled and behind WAF like every other route."
)


class Api(Construct):
    """REST API (Cognito authorizer, validation, throttling, access logs, tracing, CORS, WAF) → Lambda."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        storage: Storage,
        configuration: Configuration,
        layer: lambda_.ILayerVersion,
        allowed_origin: str,
    ) -> None:
        """`allowed_origin`: the one CORS origin (the stack chooses it: frontendOrigin, else the console)."""
        super().__init__(scope, construct_id)
        self.allowed_origin = allowed_origin
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
                "GITHUB_API_URL": config.github_api_url,
                "ALLOWED_ORIGIN": allowed_origin,
                "ALLOWED_OWNERS": ",".join(config.github_owners),
                "JOB_MAX_ATTEMPTS": str(c.JOB_MAX_ATTEMPTS),
                "RECORD_TTL_DAYS": str(c.RECORD_TTL_DAYS),
                "POWERTOOLS_SERVICE_NAME": "aipm-api",
            },
            memory_mb=c.API_MEMORY_MB,
            timeout_s=c.API_TIMEOUT_S,
        )
        storage.records.grant_read_write_data(self.handler.role)
        storage.idempotency.grant_read_write_data(self.handler.role)
        configuration.github_secret.grant_read(self.handler.role)
        acknowledge(
            self.handler.role,
            "IAM5",
            "Queries on the records table's own GSIs (status-index, repo-index, kind-index): "
            "the '/index/*' suffix is scoped to this one table.",
            f"Resource::<{logical_id(storage.records)}.Arn>/index/*",
        )
        self._rest_api(config)
        if config.api_waf:
            self._waf(config)
        else:
            acknowledge(
                self.rest_api.deployment_stage,
                "APIG3",
                "WAF turned off by the operator (context apiWaf=false), for accounts where an "
                "organisation-wide WAF policy (Firewall Manager) attaches its own web ACL; every route but "
                "health still needs a Cognito token and the stage is throttled.",
            )

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
        self.user_pool_client = self.user_pool.add_client(
            "Frontend",
            user_pool_client_name=f"{c.PROJECT}-{config.stage}-frontend",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            disable_o_auth=True,
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            enable_token_revocation=True,
        )

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
                allow_origins=[self.allowed_origin],
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
        cors_headers = {
            "Access-Control-Allow-Origin": f"'{self.allowed_origin}'",
            "Access-Control-Allow-Headers": "'" + ",".join(ALLOWED_HEADERS) + "'",
        }
        for name, response_type in (
            ("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigw.ResponseType.DEFAULT_5_XX),
        ):
            self.rest_api.add_gateway_response(name, type=response_type, response_headers=cors_headers)
        self.rest_api.add_gateway_response(
            "BadRequestBody",
            type=apigw.ResponseType.BAD_REQUEST_BODY,
            response_headers=cors_headers,
            templates={
                "application/json": '{"error": "ValidationError", "message": $context.error.messageString, '
                '"detail": $context.error.validationErrorString}'
            },
        )

        integration = apigw.LambdaIntegration(self.handler.function, proxy=True)
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[self.user_pool], results_cache_ttl=Duration.minutes(5)
        )
        params_validator = self.rest_api.add_request_validator(
            "ParamsValidator", validate_request_parameters=True
        )
        body_validator = self.rest_api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        delegate_model = self.rest_api.add_model(
            "DelegateRequestModel", content_type="application/json", schema=DELEGATE_SCHEMA
        )
        api = self.rest_api.root.add_resource(c.API_PREFIX)
        health = api.add_resource(c.HEALTH_PATH).add_method(
            "GET", integration, request_validator=params_validator
        )
        acknowledge(health, "APIG4", HEALTH_REASON)
        acknowledge(health, "COG4", HEALTH_REASON)
        for path in c.DELEGATE_PATHS:
            resource: apigw.IResource = api
            for part in path:
                resource = resource.get_resource(part) or resource.add_resource(part)
            resource.add_method(
                "POST",
                integration,
                authorizer=authorizer,
                authorization_type=apigw.AuthorizationType.COGNITO,
                request_validator=body_validator,
                request_models={"application/json": delegate_model},
                request_parameters={"method.request.header.Idempotency-Key": False},
            )
        # Every other route (jobs, cancel, retry, workers, OpenAPI document) goes to the same handler.
        api.add_resource("{proxy+}").add_method(
            "ANY",
            integration,
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.COGNITO,
            request_validator=params_validator,
        )

    def _waf(self, config: AipmConfig) -> None:
        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        def managed(
            priority: int, name: str, count_rules: tuple[str, ...] = ()
        ) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=name,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                            )
                            for rule in count_rules
                        ]
                        or None,
                    )
                ),
                visibility_config=visibility(name),
            )

        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(f"{c.PROJECT}-{config.stage}-api"),
            rules=[
                # The task text may exceed the common rule set's 8 KB body limit: count, don't block.
                managed(0, "AWSManagedRulesCommonRuleSet", ("SizeRestrictions_BODY",)),
                managed(1, "AWSManagedRulesKnownBadInputsRuleSet"),
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=2,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=c.WAF_RATE_LIMIT_PER_5_MIN, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=visibility("RateLimitPerIp"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
