"""Helpers of the `aipm ops` tests: a deployed-looking stack in the moto server, and a stand-in `aws` CLI."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAKE_AWS = """#!{python}
# Stand-in for the AWS CLI in tests: records its arguments, then {what}.
import json, os, socket, sys, threading
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
port = {port!r}
if port is None:
    sys.exit(0)
# A plain TCP relay to sshd on loopback: what the Session Manager plugin does for AWS-StartSSHSession.
sock = socket.create_connection(("127.0.0.1", port))
def pump_in():
    while True:
        data = os.read(0, 65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)
threading.Thread(target=pump_in, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


@dataclass
class Deployed:
    stack: str
    instance_ids: list[str]
    private_ips: list[str]


def launch_instances(aws: Any, count: int = 1) -> tuple[list[str], list[str]]:
    ec2 = aws("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count)["Instances"]
    return [i["InstanceId"] for i in instances], [i["PrivateIpAddress"] for i in instances]


def create_stack(aws: Any, outputs: dict[str, str]) -> str:
    """A CloudFormation stack in moto whose outputs are `outputs` (what the CDK app's stack declares)."""
    name = f"Aipm-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    aws("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def deploy_single_host(aws: Any) -> Deployed:
    ids, ips = launch_instances(aws)
    stack = create_stack(
        aws,
        {
            "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/prod/",
            "AgentInstanceId": ids[0],
            "AgentPoolPort": "8081",
            "AgentProcessorPort": "8082",
            "AgentLogGroup": f"/aipm/test/{uuid.uuid4().hex[:6]}/agent",
            "AgentTokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:agent-token",
        },
    )
    return Deployed(stack, ids, ips)


def deploy_group(aws: Any, size: int = 2) -> Deployed:
    autoscaling = aws("autoscaling")
    ami = aws("ec2").describe_images()["Images"][0]["ImageId"]
    suffix = uuid.uuid4().hex[:6]
    autoscaling.create_launch_configuration(
        LaunchConfigurationName=f"lc-{suffix}", ImageId=ami, InstanceType="t3.micro"
    )
    group = f"agents-{suffix}"
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchConfigurationName=f"lc-{suffix}",
        MinSize=size,
        MaxSize=size,
        DesiredCapacity=size,
        AvailabilityZones=["us-east-1a"],
    )
    members = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in members["Instances"]]
    stack = create_stack(aws, {"AgentAutoScalingGroupName": group, "AgentPoolPort": "8081"})
    return Deployed(stack, ids, [])


def fake_aws_cli(bin_dir: Path, log: Path, *, relay_port: int | None = None, plugin: bool = True) -> Path:
    """Put a stand-in `aws` (and `session-manager-plugin`) in `bin_dir`; `aws` records its argv in `log`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    what = f"relays stdin/stdout to 127.0.0.1:{relay_port}" if relay_port else "exits 0"
    aws = bin_dir / "aws"
    aws.write_text(FAKE_AWS.format(python=sys.executable, what=what, log=str(log), port=relay_port))
    aws.chmod(0o755)
    if plugin:
        plugin_path = bin_dir / "session-manager-plugin"
        plugin_path.write_text("#!/bin/sh\nexit 0\n")
        plugin_path.chmod(0o755)
    return bin_dir


def recorded(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]
