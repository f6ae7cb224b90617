"""`aipm ops`: a deployed stack's agent host(s) through CloudFormation outputs and AWS Systems Manager.

Nothing here opens a port: commands run through SSM send-command (fixed documents and fixed command lines,
never text from the person), and `tunnel` / `shell` run `aws ssm start-session` (the Session Manager plugin).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from aipm.cli.errors import aws_error, usage_error

DEFAULT_STACK = "Aipm-prod"
AGENT_UNIT = "aipm-agent.service"
AGENT_LOG_FILE = "/var/log/aipm/agent.log"
AGENT_PYTHON = "/opt/aipm/venv/bin/python"

# CloudFormation output keys this CLI reads (the CDK app declares them; the README's Operations runbook
# lists them).
OUT_API_URL = "ApiUrl"
OUT_USER_POOL = "UserPoolId"
OUT_USER_POOL_CLIENT = "UserPoolClientId"
OUT_INSTANCE = "AgentInstanceId"
OUT_GROUP = "AgentAutoScalingGroupName"
OUT_POOL_PORT = "AgentPoolPort"
OUT_PROCESSOR_PORT = "AgentProcessorPort"
OUT_ATTACH_PORT = "AgentAttachPort"  # optional: the interactive attach (WebSocket) port
OUT_LOG_GROUP = "AgentLogGroup"
OUT_CONSOLE_URL = "ConsoleUrl"
OUT_AGENT_TOKEN_SECRET = "AgentTokenSecretArn"  # noqa: S105 - an output key; optional, for hints
OUTPUT_KEYS = (
    OUT_API_URL,
    OUT_USER_POOL,
    OUT_USER_POOL_CLIENT,
    OUT_INSTANCE,
    OUT_GROUP,
    OUT_POOL_PORT,
    OUT_PROCESSOR_PORT,
    OUT_ATTACH_PORT,
    OUT_LOG_GROUP,
    OUT_CONSOLE_URL,
    OUT_AGENT_TOKEN_SECRET,
)

# The fixed command lines sent with AWS-RunShellScript. Nothing a person types is ever put into them.
STATUS_COMMANDS = (f"{AGENT_PYTHON} -m aipm.cli.hostcheck",)
MAX_LOG_LINES = 2000


def log_commands(lines: int) -> list[str]:
    """The fixed `aipm ops logs` script; `lines` is an integer checked here, not text."""
    if not isinstance(lines, int) or not 1 <= lines <= MAX_LOG_LINES:
        raise usage_error(f"--lines must be between 1 and {MAX_LOG_LINES}")
    return [
        f"echo '== systemd journal of {AGENT_UNIT} (start, stop, crashes)'",
        f"journalctl --unit {AGENT_UNIT} --no-pager --output short-iso --lines {min(lines, 50)}",
        f"echo '== {AGENT_LOG_FILE} (the agent log, last {lines} lines)'",
        f"tail --lines {lines} {AGENT_LOG_FILE}",
    ]


SSM_RUNNING = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
SSM_OUTPUT_LIMIT = 24000  # get_command_invocation returns at most this many characters of output


@dataclass(frozen=True)
class Target:
    instance_id: str
    private_ip: str | None
    state: str | None = None


@dataclass(frozen=True)
class Invocation:
    instance_id: str
    status: str
    exit_code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def aws_errors(stack: str | None = None, region: str | None = None) -> Iterator[None]:
    """Turn botocore errors into CliError(AWS) with what to do about them."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise aws_error(
            "no AWS credentials found",
            hint="set AWS_PROFILE (and run `aws sso login`), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ) from None
    except botocore.exceptions.NoRegionError:
        raise aws_error("no AWS region", hint="pass --region or set AWS_REGION") from None
    except botocore.exceptions.ProfileNotFound as err:
        raise aws_error(str(err), hint="check --profile / AWS_PROFILE against ~/.aws/config") from None
    except botocore.exceptions.EndpointConnectionError as err:
        raise aws_error(f"cannot reach AWS: {err}", hint="check the network and --region") from None
    except botocore.exceptions.ClientError as err:
        error = err.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", str(err))
        if code == "ValidationError" and "does not exist" in message and stack:
            raise aws_error(
                f"stack {stack} not found in {region or 'the default region'}",
                hint="pass --stack with the deployed stack's name and --region with its region",
            ) from None
        if code in (
            "ExpiredToken",
            "ExpiredTokenException",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
        ):
            raise aws_error(
                f"AWS rejected the credentials ({code})", hint="refresh them, e.g. `aws sso login`"
            ) from None
        if code in ("AccessDenied", "AccessDeniedException"):
            raise aws_error(
                f"AWS denied the call: {message}", hint="your role needs the ops permissions"
            ) from None
        if code == "InvalidInstanceId":
            raise aws_error(
                f"SSM cannot reach the instance: {message}",
                hint="is it running, with the SSM agent online (it needs the SSM endpoints)?",
            ) from None
        raise aws_error(f"{code}: {message}") from None
    except botocore.exceptions.BotoCoreError as err:
        raise aws_error(f"AWS call failed: {err}") from None


class Ops:
    """One deployed stack: its outputs, its agent host(s), and SSM calls against them."""

    def __init__(self, stack: str, *, region: str | None = None, profile: str | None = None) -> None:
        self.stack = stack
        with aws_errors():
            self.session = boto3.Session(profile_name=profile, region_name=region)
        self.region = self.session.region_name
        self.profile = profile
        self._outputs: dict[str, str] | None = None

    def client(self, service: str) -> Any:
        with aws_errors():
            return self.session.client(service)  # type: ignore[call-overload]

    @property
    def outputs(self) -> dict[str, str]:
        if self._outputs is None:
            with aws_errors(self.stack, self.region):
                stacks = self.client("cloudformation").describe_stacks(StackName=self.stack)["Stacks"]
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return self._outputs

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise aws_error(
                f"stack {self.stack} has no output {key}",
                hint="deploy the current CDK app (its outputs are listed in the README's Operations runbook)",
            )
        return value

    def port(self, key: str, default: int) -> int:
        value = self.outputs.get(key)
        return int(value) if value and value.isdigit() else default

    def targets(self) -> list[Target]:
        """The agent host(s): the stack's instance, or the running instances of its Auto Scaling group."""
        outputs = self.outputs
        with aws_errors():
            if outputs.get(OUT_INSTANCE):
                ids = [outputs[OUT_INSTANCE]]
            elif outputs.get(OUT_GROUP):
                groups = self.client("autoscaling").describe_auto_scaling_groups(
                    AutoScalingGroupNames=[outputs[OUT_GROUP]]
                )["AutoScalingGroups"]
                ids = [i["InstanceId"] for g in groups for i in g.get("Instances", [])]
            else:
                raise aws_error(
                    f"stack {self.stack} has neither {OUT_INSTANCE} nor {OUT_GROUP} among its outputs",
                    hint="is this the AIPM stack? pass --stack",
                )
            if not ids:
                raise aws_error(f"the agent group {outputs[OUT_GROUP]} has no instances")
            reservations = self.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
        found = {
            i["InstanceId"]: Target(
                i["InstanceId"], i.get("PrivateIpAddress"), i.get("State", {}).get("Name")
            )
            for r in reservations
            for i in r.get("Instances", [])
        }
        return [found.get(i, Target(i, None)) for i in ids]

    def target(self, instance_id: str | None) -> Target:
        """One host: `--instance`, or the only one there is."""
        targets = self.targets()
        if instance_id:
            for t in targets:
                if t.instance_id == instance_id:
                    return t
            raise usage_error(
                f"{instance_id} is not an agent host of stack {self.stack}",
                hint="agent hosts: " + ", ".join(t.instance_id for t in targets),
            )
        if len(targets) > 1:
            raise usage_error(
                "the stack has several agent hosts; choose one with --instance",
                hint="agent hosts: " + ", ".join(t.instance_id for t in targets),
            )
        return targets[0]

    # -- SSM send-command -------------------------------------------------------------------------------

    def run(
        self,
        instance_ids: Sequence[str],
        commands: Sequence[str],
        *,
        comment: str,
        timeout_s: float = 90,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Invocation]:
        """Run a fixed shell script on the hosts with AWS-RunShellScript and wait for every result."""
        with aws_errors():
            ssm = self.client("ssm")
            command_id = ssm.send_command(
                InstanceIds=list(instance_ids),
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": list(commands), "executionTimeout": [str(int(timeout_s))]},
                Comment=comment[:100],
                TimeoutSeconds=max(30, int(timeout_s)),
            )["Command"]["CommandId"]
            deadline = time.monotonic() + timeout_s + 30
            results: dict[str, Invocation] = {}
            while len(results) < len(instance_ids):
                for instance_id in instance_ids:
                    if instance_id in results:
                        continue
                    answer = self._invocation(ssm, command_id, instance_id)
                    if answer is not None and answer.status not in SSM_RUNNING:
                        results[instance_id] = answer
                if len(results) < len(instance_ids):
                    if time.monotonic() > deadline:
                        raise aws_error(
                            f"SSM command {command_id} did not finish in time",
                            hint=f"aws ssm list-command-invocations --command-id {command_id} --details",
                        )
                    sleep(poll_s)
        return [results[i] for i in instance_ids]

    @staticmethod
    def _invocation(ssm: Any, command_id: str, instance_id: str) -> Invocation | None:
        try:
            resp = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
                return None  # not registered yet, right after send_command
            raise
        return Invocation(
            instance_id=instance_id,
            status=str(resp.get("Status", "")),
            exit_code=int(resp.get("ResponseCode", -1)),
            stdout=str(resp.get("StandardOutputContent", "")),
            stderr=str(resp.get("StandardErrorContent", "")),
        )

    # -- CloudWatch Logs (follow) ----------------------------------------------------------------------

    def follow_logs(
        self,
        instance_ids: Sequence[str],
        emit: Callable[[str], None],
        *,
        since_s: float = 300,
        poll_s: float = 2.0,
        keep_going: Callable[[], bool] = lambda: True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Print the agent log's new events from the stack's log group (streams `<instance>/agent`)."""
        group = self.output(OUT_LOG_GROUP)
        streams = [f"{i}/agent" for i in instance_ids]
        start_ms = int((time.time() - since_s) * 1000)
        seen: set[str] = set()
        with aws_errors():
            logs = self.client("logs")
            while True:
                kwargs: dict[str, Any] = {
                    "logGroupName": group,
                    "logStreamNames": streams,
                    "startTime": start_ms,
                    "interleaved": True,
                }
                while True:
                    page = logs.filter_log_events(**kwargs)
                    for event in page.get("events", []):
                        if event["eventId"] in seen:
                            continue
                        seen.add(event["eventId"])
                        start_ms = max(start_ms, int(event["timestamp"]))
                        stream = str(event.get("logStreamName", "")).split("/")[0]
                        emit(f"{stream}  {str(event.get('message', '')).rstrip()}")
                    token = page.get("nextToken")
                    if not token:
                        break
                    kwargs["nextToken"] = token
                if not keep_going():
                    return
                sleep(poll_s)

    # -- Session Manager sessions (need the session-manager-plugin) -------------------------------------

    def _aws_argv(self, target: str, document: str, parameters: Mapping[str, list[str]]) -> list[str]:
        argv = ["aws", "ssm", "start-session", "--target", target, "--document-name", document]
        argv += ["--parameters", json.dumps(dict(parameters), separators=(",", ":"))]
        if self.region:
            argv += ["--region", self.region]
        if self.profile:
            argv += ["--profile", self.profile]
        return argv

    def tunnel_argv(self, target: Target, remote_port: int, local_port: int) -> list[str]:
        """Port forwarding to the agent's private address (the agent binds there, not to loopback)."""
        if not target.private_ip:
            raise aws_error(f"{target.instance_id} has no private IP address (state {target.state})")
        return self._aws_argv(
            target.instance_id,
            "AWS-StartPortForwardingSessionToRemoteHost",
            {
                "host": [target.private_ip],
                "portNumber": [str(remote_port)],
                "localPortNumber": [str(local_port)],
            },
        )

    def ssh_proxy_argv(self, target: Target, port: int = 22) -> list[str]:
        """The ProxyCommand of `aipm ops shell`: an SSH byte stream through an SSM session."""
        return self._aws_argv(target.instance_id, "AWS-StartSSHSession", {"portNumber": [str(port)]})


def require_session_manager() -> None:
    """Fail with instructions when the AWS CLI or its Session Manager plugin is missing."""
    missing = [name for name in ("aws", "session-manager-plugin") if shutil.which(name) is None]
    if missing:
        raise aws_error(
            f"not found on PATH: {', '.join(missing)}",
            hint="install the AWS CLI v2 and the Session Manager plugin "
            "(docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html)",
        )
