"""Shared parts of the Python Lambdas: code asset (lambda_src only), Powertools layer, role, log group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.nag import acknowledge

RUNTIME = lambda_.Runtime(c.LAMBDA_RUNTIME_NAME, lambda_.RuntimeFamily.PYTHON)


def lambda_code() -> lambda_.Code:
    """The Lambda asset: the `lambda_src` folder and nothing else (runtime deps come from the layer)."""
    return lambda_.Code.from_asset(
        str(c.REPO_ROOT), exclude=list(c.LAMBDA_ASSET_EXCLUDE), ignore_mode=IgnoreMode.DOCKER
    )


def powertools_layer_arn(scope: Construct, config: AipmConfig) -> str:
    """The public Powertools v3 layer for the stack's region (or the ARN given in context)."""
    if config.powertools_layer_arn:
        return config.powertools_layer_arn
    stack = Stack.of(scope)
    return (
        f"arn:{stack.partition}:lambda:{stack.region}:{c.POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"{c.POWERTOOLS_LAYER_NAME}:{config.powertools_layer_version}"
    )


class PythonFunction(Construct):
    """A python3.12 function on the Powertools layer with its own role, log group and X-Ray tracing."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        layer: lambda_.ILayerVersion,
        handler: str,
        description: str,
        environment: Mapping[str, str],
        memory_mb: int,
        timeout_s: int,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (execution role)",
        )
        self.log_group.grant_write(self.role)
        if vpc is not None:
            self.role.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
            )
            acknowledge(
                self.role,
                "IAM4",
                "AWSLambdaVPCAccessExecutionRole holds only the ENI create/describe/delete actions Lambda "
                "needs "
                "to attach to the VPC; AWS maintains it and those actions cannot be scoped to resources "
                "that do not exist yet.",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
            )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=lambda_code(),
            layers=[layer],
            description=description,
            environment=dict(environment),
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group,
            role=self.role,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=list(security_groups) or None,
        )
        acknowledge(
            self.role,
            "IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords do not support resource-level permissions "
            "(AWS documents Resource '*' for them); added by CDK for active tracing.",
            "Resource::*",
        )
        acknowledge(
            self.function,
            "L1",
            f"Pinned to {c.LAMBDA_RUNTIME_NAME} on purpose: it must match the pinned Powertools layer build "
            f"({c.POWERTOOLS_LAYER_NAME}) and the interpreter range the code is tested on; both move "
            "together.",
        )
