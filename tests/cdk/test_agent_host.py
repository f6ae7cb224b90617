"""Agent host: IMDSv2, encrypted EBS, no key pair, SSM-only access, a role scoped to what the agent uses."""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_cdk import Stack
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.agent_host import DRAIN_HOOK, UNPUBLISHED_ENDPOINT
from cdk.aipm_cdk.config import AipmConfig
from tests.cdk.builders import Parts, as_list, parts, policy_statements, resources


@functools.cache
def host_template(scale_out: bool = False) -> tuple[Template, Parts, dict[str, str]]:
    config = AipmConfig(agent_auto_scaling=True, agent_host_count=2) if scale_out else AipmConfig()
    p = parts(config)
    host = p.agent_host()
    stack = Stack.of(host)
    ids = {
        "role": stack.resolve(host.role.role_name)["Ref"],
        "records": stack.resolve(p.storage.records.table_name)["Ref"],
        "github_secret": stack.resolve(p.configuration.github_secret.secret_arn)["Ref"],
        "agent_token": stack.resolve(p.configuration.agent_token.secret_arn)["Ref"],
        "kiro_key": stack.resolve(p.configuration.kiro_api_key.secret_arn)["Ref"],
        "logs": stack.resolve(host.log_group.log_group_name)["Ref"],
    }
    return Template.from_stack(p.stack), p, ids


def launch_settings(template: Template, scale_out: bool) -> dict[str, Any]:
    if scale_out:
        lt = next(iter(resources(template, "AWS::EC2::LaunchTemplate").values()))
        return dict(lt["Properties"]["LaunchTemplateData"])
    return dict(next(iter(resources(template, "AWS::EC2::Instance").values()))["Properties"])


def endpoint_value(template: Template) -> Any:
    """The initial value of the /aipm/<stage>/agent/endpoint parameter."""
    params = resources(template, "AWS::SSM::Parameter").values()
    return next(
        p["Properties"]["Value"] for p in params if p["Properties"]["Name"] == "/aipm/prod/agent/endpoint"
    )


def test_imdsv2_encrypted_ebs_no_key_pair_detailed_monitoring() -> None:
    for scale_out in (False, True):
        template, _, _ = host_template(scale_out)
        props = launch_settings(template, scale_out)
        assert props["MetadataOptions"]["HttpTokens"] == "required"
        assert props["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        assert "KeyName" not in props
        ebs = [d["Ebs"] for d in props["BlockDeviceMappings"]]
        assert ebs and all(e["Encrypted"] is True for e in ebs)
        monitoring = props["Monitoring"]
        assert monitoring is True or monitoring == {"Enabled": True}


def test_single_host_is_an_instance_whose_endpoint_is_its_private_ip() -> None:
    template, _, _ = host_template()
    template.resource_count_is("AWS::EC2::Instance", 1)
    template.resource_count_is("AWS::AutoScaling::AutoScalingGroup", 0)
    value = str(endpoint_value(template))
    assert "PrivateIp" in value and ":8082" in value


def test_scale_out_is_an_auto_scaling_group_that_publishes_its_endpoint() -> None:
    template, _, ids = host_template(scale_out=True)
    template.resource_count_is("AWS::EC2::Instance", 0)
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "2", "MaxSize": "3", "Cooldown": "300"}
    )
    assert endpoint_value(template) == UNPUBLISHED_ENDPOINT
    put = [s for s in policy_statements(template, ids["role"]) if s["Action"] == "ssm:PutParameter"]
    assert len(put) == 1 and "parameter/aipm/prod/agent/endpoint" in str(put[0]["Resource"])


def test_hosts_signal_after_their_health_check_and_updates_wait_for_it() -> None:
    """CloudFormation counts a host only when bootstrap.sh signals (after GET /health); a rolling update
    replaces one host at a time, keeps every host in service, and waits for each new one's signal."""
    template, _, _ = host_template()
    (logical_id, instance), *_ = resources(template, "AWS::EC2::Instance").items()
    assert instance["CreationPolicy"]["ResourceSignal"] == {"Count": 1, "Timeout": "PT20M"}
    assert f"BOOTSTRAP_SIGNAL_RESOURCE-{logical_id}" in json.dumps(instance["Properties"]["UserData"])
    template, _, _ = host_template(scale_out=True)
    (logical_id, group), *_ = resources(template, "AWS::AutoScaling::AutoScalingGroup").items()
    assert group["CreationPolicy"]["ResourceSignal"] == {"Count": 2, "Timeout": "PT20M"}
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True and rolling["PauseTime"] == "PT20M"
    assert rolling["MaxBatchSize"] == 1 and rolling["MinInstancesInService"] == 2
    assert int(group["Properties"]["MaxSize"]) > rolling["MinInstancesInService"]  # room for the new one
    assert "HealthCheck" in rolling["SuspendProcesses"] and "ReplaceUnhealthy" in rolling["SuspendProcesses"]
    launch = next(iter(resources(template, "AWS::EC2::LaunchTemplate").values()))
    assert f"BOOTSTRAP_SIGNAL_RESOURCE-{logical_id}" in json.dumps(launch)


def test_a_terminating_host_drains_before_it_goes() -> None:
    """Scale-in and replacement: a termination lifecycle hook holds the instance until the host's drain
    unit has stopped the agent (jobs handed back) and completed the hook; the role may complete it."""
    template, _, ids = host_template(scale_out=True)
    (hook,) = [h["Properties"] for h in resources(template, "AWS::AutoScaling::LifecycleHook").values()]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["LifecycleHookName"] == DRAIN_HOOK and hook["DefaultResult"] == "CONTINUE"
    assert hook["HeartbeatTimeout"] == c.DRAIN_HOOK_TIMEOUT_S
    complete = [
        s
        for s in policy_statements(template, ids["role"])
        if s["Action"] == "autoscaling:CompleteLifecycleAction"
    ]
    assert len(complete) == 1 and "autoScalingGroupName/aipm-prod-agents" in json.dumps(complete[0])
    launch = json.dumps(next(iter(resources(template, "AWS::EC2::LaunchTemplate").values())))
    assert f"BOOTSTRAP_DRAIN_HOOK-{DRAIN_HOOK}" in launch


def test_role_is_ssm_core_plus_table_secrets_logs_and_source() -> None:
    template, _, ids = host_template()
    role = resources(template, "AWS::IAM::Role")[ids["role"]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    managed = [str(m) for m in role["ManagedPolicyArns"]]
    assert len(managed) == 1 and "AmazonSSMManagedInstanceCore" in managed[0]
    for statement in policy_statements(template, ids["role"]):
        if statement["Effect"] == "Deny":  # the other hosts' heartbeat items (tests/cdk/test_storage.py)
            assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [ids["records"], "Arn"]}], statement
            continue
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            text = str(resource)
            assert any(ids[k] in text for k in ("records", "github_secret", "agent_token", "kiro_key")) or (
                "AgentLogs" in text or "cdk-hnb659fds-assets" in text or "autoScalingGroupName" in text
            ), statement


def test_user_data_runs_every_boot_and_does_not_replace_the_instance() -> None:
    template, _, _ = host_template()
    instance = next(iter(resources(template, "AWS::EC2::Instance").values()))
    user_data = str(instance["Properties"]["UserData"])
    assert "scripts-user, always" in user_data
    assert "DependsOn" not in instance or not any("UserData" in d for d in instance["DependsOn"])
