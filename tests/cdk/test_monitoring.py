"""Monitoring: alarms for failed jobs, stuck jobs and missing heartbeats, fed without application code."""

from __future__ import annotations

import json
from typing import Any

from cdk.aipm_cdk import constants as c
from tests.cdk.builders import resources
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
