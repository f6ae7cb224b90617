"""Monitoring: alarm topic, alarms (failed jobs, jobs stuck past their lease, missing heartbeat), dashboard.

The job metrics come from the records table without any code in the application:
- an EventBridge pipe copies the stream records of jobs turning failed/timed_out and of agent heartbeats
  into a log group, where metric filters count them;
- a small Express state machine, every few minutes, counts leased jobs whose lease expired more than a
  grace period ago (DynamoDB Query on status-index) and puts that count as a metric.
"""

from __future__ import annotations

import json
import math

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.agent_host import AgentHost
from cdk.aipm_cdk.api import Api
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.dispatch import Dispatch
from cdk.aipm_cdk.functions import PythonFunction
from cdk.aipm_cdk.nag import acknowledge
from cdk.aipm_cdk.reconcile import Reconcile
from cdk.aipm_cdk.storage import Storage

FAILED_JOB_PATTERN = {
    "eventName": ["MODIFY"],
    "dynamodb": {
        "NewImage": {"kind": {"S": ["job"]}, "status": {"S": list(c.FAILED_STATUSES)}},
        "OldImage": {"status": {"S": [{"anything-but": list(c.FAILED_STATUSES)}]}},
    },
}
HEARTBEAT_PATTERN = {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"sk": {"S": [c.HEARTBEAT_SK]}}}}
# What the pipe writes per stream record (an EventBridge Pipes input transformer: `<$.path>` is replaced by
# the record's value). A metric filter's dimension value must be a field of the log event (`$.stage`), not
# a constant (CloudFormation, AWS::Logs::MetricFilter Dimension), so the stage travels in every event.
EVENT_FIELDS = ("stage", "sk", "pk", "eventName")


def pipe_input_template(stage: str) -> str:
    """The job-events log line for one stream record: `{"stage", "sk", "pk", "eventName"}`."""
    return (
        f'{{"stage": "{stage}", "sk": "<$.dynamodb.Keys.sk.S>", "pk": "<$.dynamodb.Keys.pk.S>", '
        '"eventName": "<$.eventName>"}'
    )


class Monitoring(Construct):
    """Owns the alarm topic and the dashboard; `watch_*` add the alarms and widgets of each part."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"AIPM {config.stage} alarms", enforce_ssl=True
        )
        # enforce_ssl replaces SNS's default topic policy with a lone Deny: CloudWatch alarms could no longer
        # publish. AWS's alarm troubleshooting guide: allow cloudwatch.amazonaws.com with a source-account
        # condition (the Auto Scaling notifications use the account's service-linked role, allowed by IAM).
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{c.PROJECT}-{config.stage}",
            default_interval=Duration.hours(6),
        )
        self.alarms: dict[str, cloudwatch.Alarm] = {}

    def _metric(self, name: str, statistic: str = "Sum") -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=c.METRIC_NAMESPACE,
            metric_name=name,
            dimensions_map={"Stage": self.config.stage},
            statistic=statistic,
            period=Duration.minutes(5),
        )

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 1,
        periods: int = 1,
        below: bool = False,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        """An alarm on metric (>= threshold, or < threshold when below) that notifies the topic both ways."""
        alarm = cloudwatch.Alarm(
            self,
            f"{name}Alarm",
            metric=metric,
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
            if below
            else cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[name] = alarm
        return alarm

    def watch_jobs(self, storage: Storage, host: AgentHost) -> None:
        """Failed jobs and agent heartbeats (stream → pipe → log group → metric filters); stuck jobs."""
        events_log = logs.LogGroup(
            self, "JobEvents", retention=self.config.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self._stream_pipe(storage, events_log)
        for name, pattern in (
            ("FailedJobs", f'{{ $.sk = "{c.JOB_SK}" }}'),
            ("Heartbeats", f'{{ $.sk = "{c.HEARTBEAT_SK}" }}'),
        ):
            events_log.add_metric_filter(
                name,
                filter_pattern=logs.FilterPattern.literal(pattern),
                metric_namespace=c.METRIC_NAMESPACE,
                metric_name=name,
                metric_value="1",
                dimensions={"Stage": "$.stage"},
            )
        failed = self._metric("FailedJobs")
        heartbeats = self._metric("Heartbeats")
        stuck = self._metric("StuckJobs", "Maximum")
        self._stuck_check(storage)

        self._alarm(
            "FailedJobs", failed, "A job ended failed or timed_out (see the job's reason in the API)."
        )
        self._alarm(
            "StuckJobs",
            stuck,
            f"Jobs hold a lease that expired over {c.STUCK_GRACE_MINUTES} minutes ago: no agent reclaims "
            "them (agents down or their sweep broken).",
            periods=2,
        )
        hosts = self.config.agent_host_count
        expected = hosts * c.HEARTBEAT_ALARM_MINUTES * 60 / c.HEARTBEAT_INTERVAL_S
        self._alarm(
            "HeartbeatMissing",
            heartbeats.with_(period=Duration.minutes(c.HEARTBEAT_ALARM_MINUTES)),
            f"Fewer agent heartbeats than {hosts} host(s) write: an agent is down.",
            threshold=math.ceil(expected / 2),
            below=True,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        if host.instance is not None:
            self._alarm(
                "HostStatusCheck",
                cloudwatch.Metric(
                    namespace="AWS/EC2",
                    metric_name="StatusCheckFailed",
                    dimensions_map={"InstanceId": host.instance.instance_id},
                    statistic="Maximum",
                    period=Duration.minutes(1),
                ),
                "The agent host fails its EC2 status checks.",
                periods=3,
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Jobs failed / stuck", left=[failed, stuck], width=12),
            cloudwatch.GraphWidget(title="Agent heartbeats", left=[heartbeats], width=12),
        )

    def watch_api(self, api: Api, dispatch: Dispatch, reconcile: Reconcile) -> None:
        """API 5xx and the functions' errors."""
        server_errors = api.rest_api.metric_server_error(period=Duration.minutes(5), statistic="Sum")
        self._alarm("Api5xx", server_errors, "The API answered 5xx.", threshold=5)
        functions: dict[str, PythonFunction] = {
            "ApiHandler": api.handler,
            "Dispatcher": dispatch.dispatcher,
            "Reconciler": reconcile.reconciler,
        }
        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                f"The {name} Lambda raised errors.",
            )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests / 4xx / 5xx",
                left=[
                    api.rest_api.metric_count(period=Duration.minutes(5), statistic="Sum"),
                    api.rest_api.metric_client_error(period=Duration.minutes(5), statistic="Sum"),
                    server_errors,
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors",
                left=[f.function.metric_errors(period=Duration.minutes(5)) for f in functions.values()],
                right=[api.rest_api.metric_latency(period=Duration.minutes(5), statistic="p90")],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24),
        )

    def _stream_pipe(self, storage: Storage, events_log: logs.LogGroup) -> None:
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "PipeRole",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="AIPM job-events pipe: reads the records stream, writes the job-events log group",
        )
        storage.records.grant_stream_read(role)
        events_log.grant_write(role)
        pipe = pipes.CfnPipe(
            self,
            "JobEventsPipe",
            description="Copies failed-job and heartbeat stream records into the job-events log group",
            role_arn=role.role_arn,
            source=storage.records.table_stream_arn or "",
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                dynamo_db_stream_parameters=pipes.CfnPipe.PipeSourceDynamoDBStreamParametersProperty(
                    starting_position="LATEST", batch_size=10, maximum_retry_attempts=3
                ),
                filter_criteria=pipes.CfnPipe.FilterCriteriaProperty(
                    filters=[
                        pipes.CfnPipe.FilterProperty(pattern=json.dumps(FAILED_JOB_PATTERN)),
                        pipes.CfnPipe.FilterProperty(pattern=json.dumps(HEARTBEAT_PATTERN)),
                    ]
                ),
            ),
            target=stack.format_arn(
                service="logs",
                resource="log-group",
                resource_name=events_log.log_group_name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                cloud_watch_logs_parameters=pipes.CfnPipe.PipeTargetCloudWatchLogsParametersProperty(
                    log_stream_name="stream-records"
                ),
                input_template=pipe_input_template(self.config.stage),
            ),
        )
        # Pipes checks access to the source stream when it creates the pipe ("Cannot access stream"): the
        # role's policy must exist first (a dependency on the role covers its default policy).
        pipe.node.add_dependency(role)

    def _stuck_check(self, storage: Storage) -> None:
        grace_ms = c.STUCK_GRACE_MINUTES * 60 * 1000
        count = tasks.CallAwsService.jsonata(
            self,
            "CountExpiredLeases",
            service="dynamodb",
            action="query",
            iam_action="dynamodb:Query",
            iam_resources=[f"{storage.records.table_arn}/index/{c.STATUS_INDEX}"],
            parameters={
                "TableName": storage.records.table_name,
                "IndexName": c.STATUS_INDEX,
                "KeyConditionExpression": "#status = :status",
                "FilterExpression": "leaseExpiresAtMs < :cutoff",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":status": {"S": "{% $states.input %}"},
                    ":cutoff": {"N": f"{{% $string($millis() - {grace_ms}) %}}"},
                },
                "Select": "COUNT",
            },
            outputs="{% $states.result.Count %}",
        )
        each_status = sfn.Map.jsonata(
            self,
            "EachLeasedStatus",
            items=sfn.ProvideItems.jsonata("{% " + json.dumps(list(c.LEASED_STATUSES)) + " %}"),
            max_concurrency=len(c.LEASED_STATUSES),
        )
        each_status.item_processor(count)
        put_metric = tasks.CallAwsService.jsonata(
            self,
            "PutStuckJobsMetric",
            service="cloudwatch",
            action="putMetricData",
            iam_action="cloudwatch:PutMetricData",
            iam_resources=["*"],
            parameters={
                "Namespace": c.METRIC_NAMESPACE,
                "MetricData": [
                    {
                        "MetricName": "StuckJobs",
                        "Dimensions": [{"Name": "Stage", "Value": self.config.stage}],
                        "Value": "{% $sum($states.input) %}",
                        "Unit": "Count",
                    }
                ],
            },
        )
        # Under /aws/vendedlogs/: Step Functions (a vended-logs service) otherwise adds a statement to the
        # account's CloudWatch Logs resource policy per log group, which has a 5,120-character limit.
        machine_logs = logs.LogGroup(
            self,
            "StuckCheckLogs",
            log_group_name=f"/aws/vendedlogs/states/{c.PROJECT}-{self.config.stage}-stuck-check",
            retention=self.config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            "StuckCheck",
            comment="Counts jobs whose lease expired long ago and publishes AIPM/StuckJobs",
            definition_body=sfn.DefinitionBody.from_chainable(each_status.next(put_metric)),
            query_language=sfn.QueryLanguage.JSONATA,
            state_machine_type=sfn.StateMachineType.EXPRESS,
            timeout=Duration.minutes(1),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=machine_logs, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
        )
        acknowledge(
            machine,
            "IAM5",
            "cloudwatch:PutMetricData, the X-Ray write actions and the CloudWatch Logs delivery actions "
            "Step Functions logging needs do not support resource-level permissions (Resource '*').",
            "Resource::*",
        )
        events.Rule(
            self,
            "StuckCheckSchedule",
            description="Runs the stuck-job check",
            schedule=events.Schedule.rate(Duration.minutes(c.STUCK_CHECK_MINUTES)),
            targets=[targets.SfnStateMachine(machine)],
        )
        self._alarm(
            "StuckCheckFailed",
            machine.metric_failed(period=Duration.minutes(15), statistic="Sum"),
            "The stuck-job check itself failed: the StuckJobs metric is not current.",
        )
