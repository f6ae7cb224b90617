"""The deploy option `aipmRestApiId`: our routes added to the existing AIPM REST API, so the AIPM frontend
keeps one base URL for its own backend (`/api/stories/…`) and for delegation (`/api/personal-delegate`, …).

The AIPM API is imported by id (it belongs to another stack): under its existing `/api` resource this adds
our routes (the same Lambda, a Cognito authorizer on our user pool, CORS preflights), and a deploy-time
`CreateDeployment` of its stage, re-run whenever our routes change. Its other routes, gateway responses and
stage settings stay as its owner made them; a route of ours it already has would be refused by API Gateway
at deploy time (CloudFormation names the path).
"""

from __future__ import annotations

import hashlib
import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.api import ALLOWED_HEADERS, Api
from cdk.aipm_cdk.config import AipmConfig

# Our routes under the AIPM API's /api (the catch-all of our own API becomes explicit routes there, so
# nothing of AIPM's own /api tree is shadowed).
SHARED_ROUTES: tuple[tuple[tuple[str, ...], str], ...] = (
    *c.SIGNED_IN_ROUTES,
    (("jobs",), "GET"),
    (("jobs", "{proxy+}"), "ANY"),
    (("workers",), "GET"),
)


class SharedApiRoutes(Construct):
    """Our routes on the AIPM REST API `aipmRestApiId` (stage `aipmRestApiStage`, its `/api` resource
    `aipmApiResourceId`)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig, api: Api) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.rest_api = apigw.RestApi.from_rest_api_attributes(
            self,
            "AipmRestApi",
            rest_api_id=config.aipm_rest_api_id,
            root_resource_id=config.aipm_root_resource_id,
        )
        api_resource = apigw.Resource.from_resource_attributes(
            self,
            "AipmApiResource",
            resource_id=config.aipm_api_resource_id,
            rest_api=self.rest_api,
            path="/api",
        )
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[api.user_pool], results_cache_ttl=Duration.minutes(5)
        )
        integration = apigw.LambdaIntegration(api.handler.function, proxy=True)
        self.methods: list[apigw.Method] = []
        made: dict[tuple[str, ...], apigw.IResource] = {}
        for path, verb in SHARED_ROUTES:
            resource: apigw.IResource = api_resource
            for depth in range(1, len(path) + 1):
                key = path[:depth]
                if key not in made:
                    made[key] = resource.add_resource(key[-1])
                    made[key].add_cors_preflight(
                        allow_origins=api.allowed_origins,
                        allow_methods=["GET", "POST", "OPTIONS"],
                        allow_headers=ALLOWED_HEADERS,
                        max_age=Duration.minutes(10),
                    )
                resource = made[key]
            self.methods.append(
                resource.add_method(
                    verb,
                    integration,
                    authorizer=authorizer,
                    authorization_type=apigw.AuthorizationType.COGNITO,
                )
            )
        # The stage serves a new deployment only when one is made: once per change of our routes.
        routes_hash = hashlib.sha256(json.dumps(SHARED_ROUTES).encode()).hexdigest()[:16]
        deploy = cr.AwsSdkCall(
            service="APIGateway",
            action="createDeployment",
            parameters={
                "restApiId": config.aipm_rest_api_id,
                "stageName": config.aipm_rest_api_stage,
                "description": f"AIPM delegation routes {routes_hash} ({stack.stack_name})",
            },
            physical_resource_id=cr.PhysicalResourceId.of(f"{config.aipm_rest_api_id}-{routes_hash}"),
        )
        deployment = cr.AwsCustomResource(
            self,
            "Deployment",
            on_create=deploy,
            on_update=deploy,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["apigateway:POST"],
                        resources=[
                            f"arn:{stack.partition}:apigateway:{stack.region}::/restapis/"
                            f"{config.aipm_rest_api_id}/deployments"
                        ],
                    )
                ]
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self, "DeploymentLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        for made_resource in made.values():  # its methods, the CORS preflight included
            deployment.node.add_dependency(made_resource)
