"""Dispatch: the dispatcher Lambda in the VPC, fed by queued jobs on the stream, scoped to its parameter,
its token and the heartbeats (kind-index)."""

from __future__ import annotations

import functools
import inspect
import json

from aws_cdk import Stack
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.dispatch import Dispatch
from lambda_src import dispatch_handler
from lambda_src.settings import DispatchSettings
from tests.cdk.builders import as_list, parts, policy_statements, resources

STREAM_READ = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}


@functools.cache
def dispatch_template() -> tuple[Template, dict[str, str]]:
    p = parts()
    p.agent_host()
    dispatch = Dispatch(
        p.stack,
        "Dispatch",
        config=p.config,
        network=p.network,
        storage=p.storage,
        configuration=p.configuration,
        layer=p.layer,
    )
    stack = Stack.of(dispatch)
    ids = {
        "function": stack.resolve(dispatch.dispatcher.function.function_name)["Ref"],
        "role": stack.resolve(dispatch.dispatcher.role.role_name)["Ref"],
        "sg": stack.resolve(p.network.dispatcher_sg.security_group_id)["Fn::GetAtt"][0],
        "records": stack.resolve(p.storage.records.table_name)["Ref"],
        "agent_token": stack.resolve(p.configuration.agent_token.secret_arn)["Ref"],
        "endpoint": stack.resolve(p.configuration.endpoint_parameter.parameter_name)["Ref"],
    }
    return Template.from_stack(p.stack), ids


def test_dispatcher_runs_in_the_vpc_with_its_security_group() -> None:
    template, ids = dispatch_template()
    function = resources(template, "AWS::Lambda::Function")[ids["function"]]["Properties"]
    assert function["Handler"] == "lambda_src.dispatch_handler.lambda_handler"
    assert function["Runtime"] == "python3.12"
    assert function["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [ids["sg"], "GroupId"]}]
    assert function["Environment"]["Variables"] == {
        "RECORDS_TABLE": {"Ref": ids["records"]},
        "AGENT_ENDPOINT_PARAM": "/aipm/prod/agent/endpoint",
        "AGENT_TOKEN_SECRET_ID": {"Ref": ids["agent_token"]},
        "POWERTOOLS_SERVICE_NAME": "aipm-dispatch",
    }
    assert len(function["Layers"]) == 1


def test_stream_feeds_only_queued_jobs() -> None:
    template, ids = dispatch_template()
    mapping = next(iter(resources(template, "AWS::Lambda::EventSourceMapping").values()))["Properties"]
    assert mapping["FunctionName"] == {"Ref": ids["function"]}
    assert mapping["StartingPosition"] == "LATEST"
    assert ids["records"] in json.dumps(mapping["EventSourceArn"])
    pattern = json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])
    assert pattern == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"kind": {"S": ["job"]}, "status": {"S": ["queued"]}}},
    }


def test_role_reads_only_the_endpoint_parameter_token_and_stream() -> None:
    template, ids = dispatch_template()
    for statement in policy_statements(template, ids["role"]):
        actions = as_list(statement["Action"])
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert set(actions) <= {
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }
                continue
            text = json.dumps(resource)
            assert any(ids[k] in text for k in ("records", "agent_token", "endpoint")) or (
                "DispatcherLogs" in text
            ), statement
    ssm = [s for s in policy_statements(template, ids["role"]) if "ssm:GetParameter" in as_list(s["Action"])]
    assert ssm and all(ids["endpoint"] in json.dumps(s["Resource"]) for s in ssm)


def test_role_queries_only_the_kind_index_for_heartbeats() -> None:
    """Heartbeats come from a Query on kind-index: no other DynamoDB action on the table or its indexes."""
    template, ids = dispatch_template()
    statements = policy_statements(template, ids["role"])
    table_actions = [
        (action, statement["Resource"])
        for statement in statements
        for action in as_list(statement["Action"])
        if action.startswith("dynamodb:") and "StreamArn" not in json.dumps(statement["Resource"])
    ]
    assert table_actions == [
        (
            "dynamodb:Query",
            {"Fn::Join": ["", [{"Fn::GetAtt": [ids["records"], "Arn"]}, "/index/kind-index"]]},
        )
    ]
    stream = [s for s in statements if "StreamArn" in json.dumps(s["Resource"])]
    stream_actions = {a for s in stream for a in as_list(s["Action"])}
    assert stream_actions and stream_actions <= STREAM_READ
    assert not any(a.startswith("kms:") for s in statements for a in as_list(s["Action"]))  # AWS managed key


def test_the_timeout_covers_the_worst_case_batch() -> None:
    """Issue 12: 10 jobs x 2 endpoints x a 2 s nudge timeout is 40 s; the function must outlast that."""
    nudge_s = DispatchSettings.model_fields["nudge_timeout_s"].default
    assert nudge_s == c.DISPATCH_NUDGE_TIMEOUT_S
    assert "candidates[:2]" in inspect.getsource(dispatch_handler.lambda_handler)
    worst_s = c.DISPATCH_BATCH_SIZE * c.DISPATCH_ENDPOINTS_PER_JOB * nudge_s
    template = dispatch_template()[0]
    (function,) = [
        f["Properties"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == c.DISPATCH_HANDLER
    ]
    assert function["Timeout"] >= worst_s + 10
    mapping = next(iter(resources(template, "AWS::Lambda::EventSourceMapping").values()))["Properties"]
    assert mapping["BatchSize"] == c.DISPATCH_BATCH_SIZE
