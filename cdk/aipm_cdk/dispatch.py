"""Dispatch: a small Lambda inside the VPC, fed by the records table's stream, that nudges the agent."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.functions import PythonFunction
from cdk.aipm_cdk.network import Network
from cdk.aipm_cdk.storage import Storage

# Only stream records of jobs that are (again) queued reach the function; it compares old and new images
# itself to skip updates of an already queued job.
QUEUED_JOB_FILTER = {
    "eventName": lambda_.FilterRule.or_("INSERT", "MODIFY"),
    "dynamodb": {
        "NewImage": {
            "kind": {"S": lambda_.FilterRule.is_equal("job")},
            "status": {"S": lambda_.FilterRule.is_equal("queued")},
        }
    },
}


class Dispatch(Construct):
    """The dispatcher Lambda: picks an agent from the heartbeats (records table, `kind-index`) or the
    endpoint parameter (SSM, the fallback), reads the token (Secrets Manager), POSTs to port 8082."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        network: Network,
        storage: Storage,
        configuration: Configuration,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dispatcher = PythonFunction(
            self,
            "Dispatcher",
            config=config,
            layer=layer,
            handler=c.DISPATCH_HANDLER,
            description="AIPM dispatcher: nudges the agent when a job enters the queue",
            environment={
                "RECORDS_TABLE": storage.records.table_name,
                "AGENT_ENDPOINT_PARAM": configuration.parameter_names["endpoint"],
                "AGENT_TOKEN_SECRET_ID": configuration.agent_token.secret_arn,
                "POWERTOOLS_SERVICE_NAME": "aipm-dispatch",
            },
            memory_mb=c.DISPATCH_MEMORY_MB,
            timeout_s=c.DISPATCH_TIMEOUT_S,
            vpc=network.vpc,
            vpc_subnets=network.private_subnets,
            security_groups=[network.dispatcher_sg],
        )
        # The agents' heartbeats: a Query on kind-index (kind = heartbeat), nothing else of the table.
        self.dispatcher.role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{storage.records.table_arn}/index/{c.KIND_INDEX}"],
            )
        )
        # The table uses the AWS managed key (aws/dynamodb): no grant; a customer-managed key needs one.
        if storage.records.encryption_key is not None:
            storage.records.encryption_key.grant_decrypt(self.dispatcher.role)
        configuration.endpoint_parameter.grant_read(self.dispatcher.role)
        configuration.agent_token.grant_read(self.dispatcher.role)
        self.dispatcher.function.add_event_source(
            sources.DynamoEventSource(
                storage.records,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=c.DISPATCH_BATCH_SIZE,
                max_batching_window=Duration.seconds(0),
                retry_attempts=2,
                max_record_age=Duration.minutes(5),
                filters=[lambda_.FilterCriteria.filter(QUEUED_JOB_FILTER)],
            )
        )
