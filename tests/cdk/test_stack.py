"""The whole app: cdk-nag passes with reasoned, resource-scoped acknowledgments; cfn-lint; outputs; assets."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from aws_cdk import Validations

from cdk.aipm_cdk import constants as c
from cdk.app import build_app, cdk_json_context
from tests.cdk.builders import resources
from tests.cdk.conftest import Synthesized, synthesize

WORLD = {"0.0.0.0/0", "::/0"}
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
# Actions AWS documents without resource-level permissions: the only ones allowed on Resource "*".
UNSCOPABLE_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "ec2:DescribeManagedPrefixLists",
}
# The outputs `aipm ops` reads (aipm/cli/ops.py): every one in both shapes, but the host key of the other.
CLI_OUTPUTS = (
    "ApiUrl",
    "UserPoolId",
    "UserPoolClientId",
    "AgentPoolPort",
    "AgentProcessorPort",
    "AgentAttachPort",
    "AgentLogGroup",
    "ConsoleUrl",
    "AgentTokenSecretArn",
)


def acknowledgments() -> list[tuple[str, str, str]]:
    """(construct path, rule, reason) of every AwsSolutions acknowledgment in the app."""
    _, stack = build_app(cdk_json_context())
    found = []
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found += [
                    (construct.node.path, rule, reason)
                    for rule, reason in entry.data.items()
                    if "AwsSolutions-" in rule
                ]
    return found


def test_cdk_nag_passes(full_stack: Synthesized, scaled_stack: Synthesized) -> None:
    """The fixtures raise on any AwsSolutions error or warning; a report, if written, is clean."""
    for stack in (full_stack, scaled_stack):
        report = stack.outdir / "validation-report.json"
        if report.exists():
            plugins = json.loads(report.read_text())["pluginReports"]
            assert all(not p["violations"] for p in plugins), plugins


def test_other_shapes_pass_cdk_nag_and_cfn_lint(tmp_path: Path) -> None:
    """NAT + private agent subnet, no endpoints, no WAF, no API Gateway account role, no console, an
    explicit frontend origin: still clean, and CORS takes the given origin."""
    stack = synthesize(
        tmp_path,
        natGateways="1",
        agentSubnet="private",
        vpcEndpoints="none",
        apiWaf="false",
        apiCloudWatchRole="false",
        instanceType="t4g.medium",
        console="false",
        frontendOrigins="https://aipm.example.com",
    )
    stack.template.resource_count_is("AWS::WAFv2::WebACL", 0)
    stack.template.resource_count_is("AWS::EC2::NatGateway", 1)
    for kind in ("AWS::CloudFront::Distribution", "AWS::S3::Bucket", "Custom::CDKBucketDeployment"):
        stack.template.resource_count_is(kind, 0)
    assert "ConsoleUrl" not in stack.json["Outputs"]
    api = next(
        f["Properties"]["Environment"]["Variables"]
        for f in resources(stack.template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == c.API_HANDLER
    )
    assert api["ALLOWED_ORIGINS"] == "https://aipm.example.com"
    assert "arm64" in json.dumps(stack.json["Parameters"])
    lint = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(stack.template_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout


def test_every_acknowledgment_is_resource_scoped_and_reasoned() -> None:
    found = acknowledgments()
    assert found
    for path, rule, reason in found:
        assert path != "Aipm-prod", f"stack-wide acknowledgment of {rule}"
        assert len(reason) >= 80 and reason.endswith((".", ")")), (path, rule, reason)


def test_cfn_lint_reports_no_errors_or_warnings(full_stack: Synthesized, scaled_stack: Synthesized) -> None:
    for stack in (full_stack, scaled_stack):
        result = subprocess.run(
            [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(stack.template_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_no_world_open_ingress_anywhere(full_stack: Synthesized) -> None:
    template = full_stack.template
    rules = [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]
    for group in resources(template, "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupIngress", [])
    assert rules
    for rule in rules:
        assert rule.get("CidrIp") not in WORLD and rule.get("CidrIpv6") not in WORLD, rule


def test_wildcard_resources_only_for_unscopable_actions(full_stack: Synthesized) -> None:
    for policy in resources(full_stack.template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resources_ = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "*" in resources_:
                assert set(actions) <= UNSCOPABLE_ACTIONS, statement


def outputs(stack: Synthesized) -> dict[str, Any]:
    return {k: v["Value"] for k, v in stack.json["Outputs"].items()}


def test_outputs_the_cli_reads(full_stack: Synthesized, scaled_stack: Synthesized) -> None:
    single, scaled = outputs(full_stack), outputs(scaled_stack)
    for key in CLI_OUTPUTS:
        assert key in single and key in scaled, key
    assert "AgentInstanceId" in single and "AgentAutoScalingGroupName" not in single
    assert "AgentAutoScalingGroupName" in scaled and "AgentInstanceId" not in scaled
    instance = next(iter(resources(full_stack.template, "AWS::EC2::Instance")))
    assert single["AgentInstanceId"] == {"Ref": instance}
    group = next(iter(resources(scaled_stack.template, "AWS::AutoScaling::AutoScalingGroup")))
    assert scaled["AgentAutoScalingGroupName"] == {"Ref": group}
    for out in (single, scaled):
        ports = (out["AgentPoolPort"], out["AgentProcessorPort"], out["AgentAttachPort"])
        assert ports == (str(c.POOL_PORT), str(c.PROCESSOR_PORT), str(c.ATTACH_PORT))
        assert ports == ("8081", "8082", "8083")


def test_cli_output_keys_match_the_cli() -> None:
    """The keys above are the ones aipm/cli/ops.py declares (it also lists the host keys)."""
    from aipm.cli import ops

    assert set(ops.OUTPUT_KEYS) == {*CLI_OUTPUTS, "AgentInstanceId", "AgentAutoScalingGroupName"}


def test_agent_log_group_output_is_where_the_host_ships_its_log(
    full_stack: Synthesized, scaled_stack: Synthesized
) -> None:
    """AgentLogGroup names the group the CloudWatch agent writes to, in streams <instance-id>/agent."""
    for stack, kind in ((full_stack, "AWS::EC2::Instance"), (scaled_stack, "AWS::EC2::LaunchTemplate")):
        group = outputs(stack)["AgentLogGroup"]
        assert set(group) == {"Ref"}
        resources(stack.template, "AWS::Logs::LogGroup")[group["Ref"]]  # it exists
        (host,) = resources(stack.template, kind).values()
        user_data = json.dumps(host["Properties"])
        assert json.dumps(group) in user_data
        assert '\\"log_stream_name\\":\\"{instance_id}/agent\\"' in user_data


def test_outputs_give_urls_ids_and_exact_ssm_commands(full_stack: Synthesized) -> None:
    out = outputs(full_stack)
    for key in ("ApiUrl", "UserPoolId", "UserPoolClientId", "AgentInstanceId", "SsmShellCommand"):
        assert key in out, key
    shell = json.dumps(out["SsmShellCommand"])
    assert "aws ssm start-session --region " in shell and "AgentInstance" in shell
    for port in c.AGENT_PORTS:
        command = json.dumps(out[f"SsmPortForward{port}"])
        assert "--document-name AWS-StartPortForwardingSessionToRemoteHost" in command
        assert f"portNumber={port},localPortNumber={port}" in command
        assert "PrivateIp" in command and "AgentInstance" in command


def test_scale_out_outputs_list_the_hosts(scaled_stack: Synthesized) -> None:
    out = outputs(scaled_stack)
    assert "AgentInstanceId" not in out and "AgentPrivateIp" not in out
    assert "aws:autoscaling:groupName" in json.dumps(out["ListAgentHostsCommand"])
    assert "<instance-id>" in json.dumps(out["SsmPortForward8082"])
    scaled_stack.template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup", {"MinSize": "3", "MaxSize": "4"}
    )


def asset_dir(stack: Synthesized, code: dict[str, Any]) -> Path:
    key = code["S3Key"]
    return stack.outdir / f"asset.{key.removesuffix('.zip')}"


def zipped_size(directory: Path) -> int:
    """Bytes of the directory zipped with deflate, as `cdk deploy` uploads it."""
    target = directory.parent / f"{directory.name}.measure.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return target.stat().st_size


def test_lambda_asset_holds_only_lambda_src(full_stack: Synthesized) -> None:
    functions = resources(full_stack.template, "AWS::Lambda::Function").values()
    ours = [f for f in functions if f["Properties"].get("Runtime") == c.LAMBDA_RUNTIME_NAME]
    assert len(ours) == 3  # API, dispatcher, reconciler
    directories = {asset_dir(full_stack, f["Properties"]["Code"]) for f in ours}
    assert len(directories) == 1  # one asset for all functions
    directory = directories.pop()
    files = [p.relative_to(directory) for p in directory.rglob("*") if p.is_file()]
    assert files and all(f.parts[0] == "lambda_src" for f in files), files
    assert all(f.suffix == ".py" for f in files), files
    assert not any("__pycache__" in f.parts or "tests" in f.parts for f in files)
    assert (directory / "lambda_src" / "handler.py").is_file()
    assert zipped_size(directory) < 512 * 1024


def test_agent_source_asset_is_the_distribution_only(full_stack: Synthesized) -> None:
    manifest = json.loads((full_stack.outdir / f"{full_stack.stack_name}.assets.json").read_text())
    paths = {entry["source"]["path"] for entry in manifest["files"].values()}
    sources = [full_stack.outdir / p for p in paths if (full_stack.outdir / p / "pyproject.toml").exists()]
    assert len(sources) == 1
    top = {p.name for p in sources[0].iterdir()}
    assert top <= {"pyproject.toml", "README.md", "lambda_src", "ec2_agent", "aipm", "cdk"}
    assert {"pyproject.toml", "lambda_src", "ec2_agent"} <= top
    # Of cdk/, only the host's lock file (the host installs third-party packages from it).
    assert [p.relative_to(sources[0]) for p in (sources[0] / "cdk").rglob("*") if p.is_file()] == [
        Path("cdk/host/agent.lock")
    ]
    assert not list(sources[0].rglob("__pycache__"))
