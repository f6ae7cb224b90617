"""`aipm ops` against the real moto server process: CloudFormation outputs, EC2/Auto Scaling, SSM, Logs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from aipm.cli.errors import Exit
from aipm.cli.ops import STATUS_COMMANDS, Ops, log_commands
from tests.cli.conftest import run
from tests.cli.ops_support import deploy_group, deploy_single_host, fake_aws_cli, recorded


@pytest.fixture
def aws_env(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The environment a person would have, pointed at the moto server."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AIPM_STACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws_endpoint


def sent_commands(aws: Any, instance_id: str) -> list[dict[str, Any]]:
    commands = aws("ssm").list_commands(InstanceId=instance_id)["Commands"]
    return [{"document": c["DocumentName"], "commands": c["Parameters"]["commands"]} for c in commands]


def test_status_sends_the_fixed_health_command_to_the_stack_instance(
    aws_env: str, aws_client_factory: Any
) -> None:
    deployed = deploy_single_host(aws_client_factory)
    result = run("ops", "--stack", deployed.stack, "status")

    assert sent_commands(aws_client_factory, deployed.instance_ids[0]) == [
        {"document": "AWS-RunShellScript", "commands": list(STATUS_COMMANDS)}
    ]
    assert STATUS_COMMANDS == ("/opt/aipm/venv/bin/python -m aipm.cli.hostcheck",)
    # moto runs nothing, so no report comes back: that is reported, and the exit code says so.
    assert result.code == Exit.AWS
    assert f"host {deployed.instance_ids[0]} ({deployed.private_ips[0]}): SSM command Success" in result.out
    assert "no health report came back" in result.out


def test_status_json_covers_every_host_of_an_auto_scaling_group(
    aws_env: str, aws_client_factory: Any
) -> None:
    deployed = deploy_group(aws_client_factory, size=2)
    result = run("ops", "--stack", deployed.stack, "status", "--json")

    value = json.loads(result.out)
    assert sorted(h["instanceId"] for h in value["hosts"]) == sorted(deployed.instance_ids)
    assert value["healthy"] is False
    for instance_id in deployed.instance_ids:
        assert sent_commands(aws_client_factory, instance_id)[0]["commands"] == list(STATUS_COMMANDS)


def test_logs_sends_the_fixed_log_script(aws_env: str, aws_client_factory: Any) -> None:
    deployed = deploy_single_host(aws_client_factory)
    result = run("ops", "--stack", deployed.stack, "logs", "--lines", "250")

    assert result.code == Exit.OK, result.err
    assert result.out.startswith(f"==== {deployed.instance_ids[0]} (SSM Success)")
    sent = sent_commands(aws_client_factory, deployed.instance_ids[0])[0]["commands"]
    assert sent == log_commands(250)
    assert "journalctl --unit aipm-agent.service --no-pager --output short-iso --lines 50" in sent
    assert "tail --lines 250 /var/log/aipm/agent.log" in sent


def test_log_line_counts_are_checked_not_interpolated(aws_env: str, aws_client_factory: Any) -> None:
    deployed = deploy_single_host(aws_client_factory)
    assert run("ops", "--stack", deployed.stack, "logs", "--lines", "0").code == Exit.USAGE
    assert run("ops", "--stack", deployed.stack, "logs", "--lines", "99999").code == Exit.USAGE


def test_follow_reads_the_agent_log_group(aws_env: str, aws_client_factory: Any) -> None:
    deployed = deploy_single_host(aws_client_factory)
    instance = deployed.instance_ids[0]
    logs = aws_client_factory("logs")
    ops = Ops(deployed.stack, region="us-east-1")
    group = ops.outputs["AgentLogGroup"]
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=f"{instance}/agent")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=f"{instance}/agent",
        logEvents=[{"timestamp": now + i, "message": f'{{"msg": "line {i}"}}'} for i in range(3)],
    )
    lines: list[str] = []
    passes = iter([True, False])
    ops.follow_logs([instance], lines.append, keep_going=lambda: next(passes), sleep=lambda _s: None)
    assert lines == [f'{instance}  {{"msg": "line {i}"}}' for i in range(3)]  # each event once


def test_tunnel_forwards_the_agent_ports_to_its_private_address(
    aws_env: str, aws_client_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = deploy_single_host(aws_client_factory)
    log = tmp_path / "aws-calls"
    bin_dir = fake_aws_cli(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    result = run("ops", "--stack", deployed.stack, "tunnel")
    assert result.code == Exit.OK, result.err
    target, ip = deployed.instance_ids[0], deployed.private_ips[0]
    assert sorted(recorded(log)) == [
        [
            "ssm", "start-session", "--target", target,
            "--document-name", "AWS-StartPortForwardingSessionToRemoteHost",
            "--parameters", json.dumps({"host": [ip], "portNumber": [str(p)], "localPortNumber": [str(p)]},
                                       separators=(",", ":")),
            "--region", "us-east-1",
        ]
        for p in (8081, 8082)
    ]  # fmt: skip
    assert "forwarding 127.0.0.1:8081 -> " in result.err
    assert "agent-token" in result.err  # how to get the agent token, from the stack output

    log.unlink()
    assert run("ops", "--stack", deployed.stack, "tunnel", "--port", "8083:18083").code == Exit.OK
    params = json.loads(recorded(log)[0][7])
    assert params == {"host": [ip], "portNumber": ["8083"], "localPortNumber": ["18083"]}


def test_tunnel_and_shell_need_the_session_manager_plugin(
    aws_env: str, aws_client_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = deploy_single_host(aws_client_factory)
    bin_dir = fake_aws_cli(tmp_path / "bin", tmp_path / "log", plugin=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    for action in ("tunnel", "shell"):
        result = run("ops", "--stack", deployed.stack, action)
        assert result.code == Exit.AWS
        assert "not found on PATH: session-manager-plugin" in result.err and "hint:" in result.err


def test_several_hosts_need_instance_for_a_session(aws_env: str, aws_client_factory: Any) -> None:
    deployed = deploy_group(aws_client_factory, size=2)
    result = run("ops", "--stack", deployed.stack, "tunnel")
    assert result.code == Exit.USAGE
    assert "choose one with --instance" in result.err
    assert all(i in result.err for i in deployed.instance_ids)
    wrong = run("ops", "--stack", deployed.stack, "status", "--instance", "i-0000000000000000")
    assert wrong.code == Exit.USAGE and "is not an agent host" in wrong.err


# -- errors a person can act on ------------------------------------------------------------------------


def test_stack_not_found(aws_env: str) -> None:
    result = run("ops", "--stack", "NoSuchStack", "status")
    assert result.code == Exit.AWS
    assert "stack NoSuchStack not found in us-east-1" in result.err and "--stack" in result.err


def test_a_stack_without_agent_outputs(aws_env: str, aws_client_factory: Any) -> None:
    from tests.cli.ops_support import create_stack

    stack = create_stack(aws_client_factory, {"SomethingElse": "x"})
    result = run("ops", "--stack", stack, "status")
    assert result.code == Exit.AWS and "neither AgentInstanceId nor AgentAutoScalingGroupName" in result.err


def test_no_credentials(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run("ops", "status")
    assert result.code == Exit.AWS
    assert "no AWS credentials found" in result.err and "AWS_PROFILE" in result.err


def test_no_region(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = run("ops", "status")
    assert result.code == Exit.AWS and "no AWS region" in result.err


def test_unknown_profile(aws_env: str) -> None:
    result = run("ops", "--profile", "nope", "status")
    assert result.code == Exit.AWS and "nope" in result.err
