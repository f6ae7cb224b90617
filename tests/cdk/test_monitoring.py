"""Monitoring: alarms for failed jobs, stuck jobs and missing heartbeats, fed without application code."""

from __future__ import annotations

import json
import re
from typing import Any

from cdk.aipm_cdk import constants as c
from tests.cdk.builders import as_list, resources
from tests.cdk.conftest import Synthesized


def alarms(stack: Synthesized) -> dict[str, dict[str, Any]]:
    found = resources(stack.template, "AWS::CloudWatch::Alarm").values()
    return {a["Properties"].get("MetricName", "math"): a["Properties"] for a in found}


def test_job_and_heartbeat_alarms_notify_the_topic(full_stack: Synthesized) -> None:
    by_metric = alarms(full_stack)
    for metric in ("FailedJobs", "StuckJobs", "Heartbeats", "StatusCheckFailed", "5XXError", "Errors"):
        assert metric in by_metric, metric
    for alarm in by_metric.values():
        assert alarm["AlarmActions"] and alarm["OKActions"]
    heartbeat = by_metric["Heartbeats"]
    assert heartbeat["ComparisonOperator"] == "LessThanThreshold"
    assert heartbeat["TreatMissingData"] == "breaching"
    assert heartbeat["Namespace"] == c.METRIC_NAMESPACE


def test_heartbeat_threshold_scales_with_the_number_of_hosts(
    full_stack: Synthesized, scaled_stack: Synthesized
) -> None:
    one, three = (
        alarms(full_stack)["Heartbeats"]["Threshold"],
        alarms(scaled_stack)["Heartbeats"]["Threshold"],
    )
    assert three == 3 * one
    assert "StatusCheckFailed" not in alarms(scaled_stack)  # the group replaces unhealthy hosts


def test_pipe_copies_failed_jobs_and_heartbeats_from_the_stream(full_stack: Synthesized) -> None:
    pipe = next(iter(resources(full_stack.template, "AWS::Pipes::Pipe").values()))["Properties"]
    assert "StreamArn" in json.dumps(pipe["Source"])
    patterns = [json.loads(f["Pattern"]) for f in pipe["SourceParameters"]["FilterCriteria"]["Filters"]]
    failed, heartbeat = patterns
    assert failed["dynamodb"]["NewImage"]["status"]["S"] == ["failed", "timed_out"]
    assert heartbeat["dynamodb"]["Keys"]["sk"]["S"] == ["HEARTBEAT"]
    filters = {
        f["Properties"]["MetricTransformations"][0]["MetricName"]
        for f in resources(full_stack.template, "AWS::Logs::MetricFilter").values()
    }
    assert filters == {"FailedJobs", "Heartbeats"}


def test_stuck_check_queries_expired_leases_on_a_schedule(full_stack: Synthesized) -> None:
    machine = next(iter(resources(full_stack.template, "AWS::StepFunctions::StateMachine").values()))
    props = machine["Properties"]
    assert props["StateMachineType"] == "EXPRESS"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    definition = json.dumps(props["DefinitionString"])
    for status in c.LEASED_STATUSES:
        assert status in definition
    assert "leaseExpiresAtMs < :cutoff" in definition and "status-index" in definition
    rule = next(iter(resources(full_stack.template, "AWS::Events::Rule").values()))["Properties"]
    assert rule["ScheduleExpression"] == f"rate({c.STUCK_CHECK_MINUTES} minutes)"


def test_log_groups_have_retention(full_stack: Synthesized) -> None:
    groups = resources(full_stack.template, "AWS::Logs::LogGroup").values()
    assert groups and all(g["Properties"].get("RetentionInDays") == 30 for g in groups)


def test_dashboard_exists(full_stack: Synthesized) -> None:
    full_stack.template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "aipm-prod"})


# --- the documented AWS rules the first template broke (issue 12) ---


def test_metric_filter_dimension_values_are_fields_of_the_log_events(full_stack: Synthesized) -> None:
    """CloudFormation AWS::Logs::MetricFilter: a dimension value names a field of the log event (`$.x`);
    PutMetricFilter refuses a constant. The field must also be in every event the pipe writes."""
    pipe = next(iter(resources(full_stack.template, "AWS::Pipes::Pipe").values()))["Properties"]
    template = pipe["TargetParameters"]["InputTemplate"]
    sample = json.loads(template.replace("<$.dynamodb.Keys.sk.S>", "HEARTBEAT").replace("<$.", "<"))
    for metric_filter in resources(full_stack.template, "AWS::Logs::MetricFilter").values():
        for transformation in metric_filter["Properties"]["MetricTransformations"]:
            for dimension in transformation.get("Dimensions", []):
                value = dimension["Value"]
                assert re.fullmatch(r"\$\.[A-Za-z0-9_]+", value), f"{dimension} is not an event field"
                assert value[2:] in sample, f"the pipe's events carry no {value}"
    assert sample["stage"] == "prod"


def test_the_pipe_waits_for_its_role_policy(full_stack: Synthesized) -> None:
    """EventBridge Pipes checks access to its source stream when it creates the pipe: the pipe must depend
    on its role's policy (else "Cannot access stream")."""
    (pipe_id, pipe), *_ = resources(full_stack.template, "AWS::Pipes::Pipe").items()
    role_id = pipe["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    policies = [
        logical_id
        for logical_id, policy in resources(full_stack.template, "AWS::IAM::Policy").items()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    statements = json.dumps(
        [resources(full_stack.template, "AWS::IAM::Policy")[p]["Properties"] for p in policies]
    )
    assert "dynamodb:GetRecords" in statements
    assert policies and set(policies) <= set(pipe.get("DependsOn", [])), pipe_id


def test_cloudwatch_may_publish_to_the_alarm_topic(full_stack: Synthesized) -> None:
    """enforce_ssl replaces SNS's default policy with a Deny; CloudWatch alarms then need an Allow for
    cloudwatch.amazonaws.com, limited to this account (AWS: "Why didn't I receive an SNS notification for
    my CloudWatch alarm trigger?")."""
    topic_id = next(iter(resources(full_stack.template, "AWS::SNS::Topic")))
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(full_stack.template, "AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
    ]
    allow = [s for s in policy if s["Effect"] == "Allow"]
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and "sns:Publish" in as_list(s["Action"])
        and s["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        for s in allow
    ), allow
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy)
    alarm_actions = [
        a["Properties"]["AlarmActions"]
        for a in resources(full_stack.template, "AWS::CloudWatch::Alarm").values()
    ]
    assert all(actions == [{"Ref": topic_id}] for actions in alarm_actions)


def test_step_functions_logs_under_vendedlogs(full_stack: Synthesized) -> None:
    """Log groups that Step Functions delivers to are named /aws/vendedlogs/… (AWS: otherwise each one adds
    to the account's CloudWatch Logs resource policy, which is limited to 5,120 characters)."""
    machines = resources(full_stack.template, "AWS::StepFunctions::StateMachine").values()
    groups = resources(full_stack.template, "AWS::Logs::LogGroup")
    for machine in machines:
        for destination in machine["Properties"]["LoggingConfiguration"]["Destinations"]:
            group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
            assert groups[group_id]["Properties"]["LogGroupName"].startswith("/aws/vendedlogs/states/")
