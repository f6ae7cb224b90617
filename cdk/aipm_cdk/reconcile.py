"""The reconciler: a scheduled Lambda that finishes or undoes delegations that stopped half-way (a PR whose
job record was never written, an intent older than a few minutes), with only the records table and the
GitHub secret."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.functions import PythonFunction
from cdk.aipm_cdk.nag import acknowledge, logical_id
from cdk.aipm_cdk.storage import Storage


class Reconcile(Construct):
    """`lambda_src.reconcile_handler.lambda_handler`, every RECONCILE_MINUTES minutes (EventBridge)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        storage: Storage,
        configuration: Configuration,
        layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.reconciler = PythonFunction(
            self,
            "Reconciler",
            config=config,
            layer=layer,
            handler=c.RECONCILE_HANDLER,
            description="AIPM reconciler: finishes or undoes delegations that stopped half-way",
            environment={
                "RECORDS_TABLE": storage.records.table_name,
                "GITHUB_SECRET_ID": configuration.github_secret.secret_arn,
                "GITHUB_API_URL": config.github_api_url,
                "JOB_MAX_ATTEMPTS": str(c.JOB_MAX_ATTEMPTS),
                "RECORD_TTL_DAYS": str(c.RECORD_TTL_DAYS),
                "POWERTOOLS_SERVICE_NAME": "aipm-reconcile",
            },
            memory_mb=c.RECONCILE_MEMORY_MB,
            timeout_s=c.RECONCILE_TIMEOUT_S,
        )
        storage.grant_records_to_service(self.reconciler.role)
        configuration.github_secret.grant_read(self.reconciler.role)
        acknowledge(
            self.reconciler.role,
            "IAM5",
            "Queries on the records table's own GSIs (the intents and jobs to reconcile): the '/index/*' "
            "suffix is scoped to this one table.",
            f"Resource::<{logical_id(storage.records)}.Arn>/index/*",
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Runs the reconciler",
            schedule=events.Schedule.rate(Duration.minutes(c.RECONCILE_MINUTES)),
            targets=[targets.LambdaFunction(self.reconciler.function, retry_attempts=0)],
        )
