"""The `aipm` command line: delegate tasks, follow and manage jobs, run the local stack, operate a stack."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from aipm.cli import render
from aipm.cli.api import ApiClient
from aipm.cli.errors import EXIT_CODES_HELP, CliError, Exit, usage_error
from aipm.cli.follow import Progress, follow, tail_delta
from aipm.cli.tasks import build_task, load_task_file
from lambda_src.records.models import JobStatus

JOB_STATUSES = tuple(status.value for status in JobStatus)

MAIN_HELP = f"""\
examples:
  aipm local                                   # the whole pipeline on this machine (prints how to sign in)
  aipm login --domain https://SIGN-IN-DOMAIN --client-id CLIENT_ID     # once; then tokens are refreshed
  export AIPM_API_URL=http://127.0.0.1:PORT
  aipm delegate --repo aipm-demo/tools --title "Add export button" \\
                --objective "User can export data" --criterion "Button appears"
  aipm delegate -f task.yaml --no-wait         # prints the job id and the PR URL
  aipm jobs list --status failed
  aipm jobs show JOB_ID --follow
  aipm --json jobs list | jq -r '.jobs[].jobId'
  aipm ops status --stack Aipm-prod --region eu-west-1

configuration:
  AIPM_API_URL    API base URL (--api-url): the stack's ApiUrl output, or what `aipm local` prints
  AIPM_API_TOKEN  bearer token (--token); without it, the ID token `aipm login` cached is used
  AIPM_PROFILE    the sign-in profile (`aipm login --profile`, default "default")
  AIPM_STACK      CloudFormation stack name for `aipm ops` (--stack, default Aipm-prod)
  AWS_PROFILE, AWS_REGION  AWS credentials and region for `aipm ops`

{EXIT_CODES_HELP}
"""

DELEGATE_HELP = """\
The task comes from flags and/or a YAML or JSON file with the API's field names (flags win):

  # task.yaml
  owner: aipm-demo
  repo: tools
  branchName: feature/add-export
  taskTitle: Add export button
  objective: User can export data
  prTitle: "feat: Add export button"
  constraints: Use existing button patterns
  acceptanceCriteria: [Button appears, Export works]

Defaults: prTitle = the task title; branchName = feature/<title as a slug>. The API adds a unique suffix to
the branch. Without --no-wait, each step of the job is printed as it happens until the job ends; the exit
code says how it ended (0 completed, 1 failed/timed_out/cancelled/no_changes, 5 --timeout passed).

examples:
  aipm delegate --repo aipm-demo/tools --title "Add export button" --objective "User can export data" \\
                --criterion "Button appears" --criterion "Export works"
  aipm delegate -f task.yaml --base-branch develop
  aipm --json delegate -f task.yaml --no-wait | jq -r .jobId
"""

OPS_HELP = """\
Reads the stack's CloudFormation outputs (AgentInstanceId or AgentAutoScalingGroupName, AgentPoolPort,
AgentProcessorPort, AgentLogGroup, ...) and reaches the agent host(s) through AWS Systems Manager only:
no SSH port and no public agent port exist. `tunnel` and `shell` need the AWS CLI v2 and its Session
Manager plugin on this machine. See docs/operations.md for the runbook.

examples:
  aipm ops status                      # systemd state + both agent ports' /health, via SSM send-command
  aipm ops logs --lines 200            # the unit's journal and the agent log, via SSM send-command
  aipm ops logs --follow               # the agent log from CloudWatch Logs, until Ctrl-C
  aipm ops tunnel                      # localhost:8081/8082 -> the agent, until Ctrl-C
  aipm ops shell -i ~/.ssh/aipm_ed25519 --command 'sudo systemctl restart aipm-agent'
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _port_spec(text: str) -> tuple[int, int]:
    remote, _, local = text.partition(":")
    try:
        pair = (int(remote), int(local or remote))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port or REMOTE:LOCAL pair: {text!r}") from None
    if not all(0 < p < 65536 for p in pair):
        raise argparse.ArgumentTypeError(f"ports are 1-65535: {text!r}")
    return pair


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="aipm",
        description="AIPM code delegation: a task becomes a pull request with AI-written code.",
        epilog=MAIN_HELP,
        formatter_class=fmt,
    )
    parser.add_argument(
        "--api-url", default=os.environ.get("AIPM_API_URL"), help="API base URL (AIPM_API_URL)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="API bearer token (prefer AIPM_API_TOKEN: command lines are visible to other local users)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    # The same three options are accepted after the command too (`aipm jobs list --json`).
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--api-url", help="API base URL (AIPM_API_URL)")
    common.add_argument("--token", help="API bearer token (prefer AIPM_API_TOKEN)")
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    sub = _Subparsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True), common)

    # -- delegate ---------------------------------------------------------------------------------------
    d = sub.add_parser(
        "delegate", help="submit a task and follow its job", description=DELEGATE_HELP, formatter_class=fmt
    )
    d.add_argument("-f", "--file", help="task file (YAML or JSON; - for stdin)")
    d.add_argument("--repo", help="OWNER/REPO (or REPO with --owner)")
    d.add_argument("--owner", help="repository owner")
    d.add_argument("--branch", dest="branchName", help="branch name (a unique suffix is added)")
    d.add_argument("--title", dest="taskTitle", help="task title")
    d.add_argument("--objective", help="what the change must achieve")
    d.add_argument("--pr-title", dest="prTitle", help="pull request title (default: the task title)")
    d.add_argument("--constraints", help="constraints for the coding agent")
    d.add_argument(
        "--criterion",
        dest="acceptanceCriteria",
        action="append",
        default=[],
        help="acceptance criterion (repeat)",
    )
    d.add_argument("--base-branch", dest="baseBranch", help="base branch (default: the repository's default)")
    d.add_argument(
        "--idempotency-key", help="makes a repeated submit return the first result (default: random)"
    )
    d.add_argument("--no-wait", action="store_true", help="print the job id and PR URL and return")
    _follow_flags(d)

    # -- jobs -------------------------------------------------------------------------------------------
    j = sub.add_parser("jobs", help="list, show, cancel, retry jobs; their agent output")
    jsub = _Subparsers(j.add_subparsers(dest="jobs_command", metavar="ACTION", required=True), common)
    jl = jsub.add_parser("list", help="jobs, newest first")
    jl.add_argument("--status", choices=JOB_STATUSES)
    jl.add_argument("--repo", help="OWNER/REPO")
    jl.add_argument("--limit", type=int, default=25, help="jobs per page (default 25)")
    jl.add_argument("--cursor", help="the nextCursor of the previous page")
    jl.add_argument("--all", action="store_true", help="follow nextCursor through every page")
    js = jsub.add_parser("show", help="one job: status, attempts, worker, commit, timeline")
    js.add_argument("job_id")
    js.add_argument(
        "--follow", action="store_true", help="follow it until it ends; the exit code tells how it ended"
    )
    _follow_flags(js)
    jc = jsub.add_parser("cancel", help="cancel a job that has not ended (409 if it has)")
    jc.add_argument("job_id")
    jr = jsub.add_parser("retry", help="queue an unsuccessful job again (409 if it cannot be)")
    jr.add_argument("job_id")
    jr.add_argument("--follow", action="store_true", help="then follow it until it ends")
    _follow_flags(jr)
    jg = jsub.add_parser("logs", help="the tail of the agent's output for a job")
    jg.add_argument("job_id")
    jg.add_argument("--follow", action="store_true", help="keep printing new output until the job ends")
    _follow_flags(jg)

    sub.add_parser("workers", help="the agent pool: agents, slots, busy/idle (from heartbeats)")

    # -- login / logout ---------------------------------------------------------------------------------
    from aipm.cli.login import add_login_arguments

    add_login_arguments(sub.add_parser("login", help="sign in through the browser (Cognito managed login)"))
    add_login_arguments(sub.add_parser("logout", help="sign out: revoke the refresh token, drop the tokens"))

    # -- local ------------------------------------------------------------------------------------------
    from aipm.local.stack import add_arguments as add_local_arguments

    loc = sub.add_parser(
        "local",
        help="run the whole pipeline on this machine until Ctrl-C",
        description="The local stack (moto, git forge, API gateway + the real Lambda handlers, the agent "
        "with the Kiro emulator) and the web console. Prints their URLs, the token, and the API URL last.",
    )
    add_local_arguments(loc)

    # -- ops --------------------------------------------------------------------------------------------
    o = sub.add_parser(
        "ops", help="operate a deployed stack through SSM", description=OPS_HELP, formatter_class=fmt
    )
    o.add_argument(
        "--stack", default=os.environ.get("AIPM_STACK", "Aipm-prod"), help="stack name (AIPM_STACK)"
    )
    o.add_argument("--region", default=None, help="AWS region (default: AWS_REGION / the profile's)")
    o.add_argument("--profile", default=None, help="AWS profile (default: AWS_PROFILE)")
    osub = _Subparsers(o.add_subparsers(dest="ops_command", metavar="ACTION", required=True), common)
    os_ = osub.add_parser("status", help="agent health on each host, through SSM send-command")
    os_.add_argument("--instance", help="only this host (default: every agent host)")
    og = osub.add_parser(
        "logs", help="the agent's journal and log, through SSM (or CloudWatch with --follow)"
    )
    og.add_argument("--instance", help="only this host (default: every agent host)")
    og.add_argument("--lines", type=int, default=100, help="log lines per host (1-2000, default 100)")
    og.add_argument("--follow", action="store_true", help="tail the agent log group in CloudWatch Logs")
    og.add_argument("--since", type=_positive, default=300, help="with --follow: start this many seconds ago")
    ot = osub.add_parser("tunnel", help="SSM port forwarding to the agent's ports, until Ctrl-C")
    ot.add_argument("--instance", help="agent host (needed when there are several)")
    ot.add_argument(
        "--port",
        dest="ports",
        type=_port_spec,
        action="append",
        help="REMOTE[:LOCAL] (repeat; default: the pool and processor ports, same local port)",
    )
    osh = osub.add_parser(
        "shell", help="SSH over an SSM session (paramiko), for when a plain shell is not enough"
    )
    osh.add_argument("--instance", help="agent host (needed when there are several)")
    osh.add_argument("-l", "--user", default="ec2-user", help="login user (default ec2-user)")
    osh.add_argument("-i", "--identity", help="private key file (default: ssh-agent and ~/.ssh/id_*)")
    osh.add_argument(
        "--command",
        dest="remote_command",
        help="run this command instead of a login shell; exit with its status",
    )
    osh.add_argument("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    osh.add_argument("--accept-new-host-key", action="store_true", help="trust and save an unknown host key")
    return parser


class _Subparsers:
    """`add_parser` that gives every sub-command the common options."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self._action = action
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(name, parents=[self._common], **kwargs)
        return parser


def _follow_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=_positive, default=1.0, help="seconds between polls (default 1)")
    parser.add_argument(
        "--timeout", type=_positive, default=None, help="stop following after this many seconds"
    )


# -- commands ---------------------------------------------------------------------------------------------


class Cli:
    """Runs one parsed command; writes results to `out` and progress/errors to `err`."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err

    def client(self) -> ApiClient:
        if not self.args.api_url:
            raise usage_error(
                "no API URL",
                hint="set AIPM_API_URL (or --api-url): the stack's ApiUrl output, or the URL "
                "`aipm local` prints",
            )
        token = self.args.token or os.environ.get("AIPM_API_TOKEN") or None
        if token is not None:
            return ApiClient(self.args.api_url, token)
        from aipm.cli.login import CachedToken, TokenCache, profile_name

        return ApiClient(self.args.api_url, CachedToken(TokenCache(profile_name(self.args))))

    def emit(self, value: object, lines: Sequence[str]) -> None:
        if self.args.json:
            render.print_json(self.out, value)
        else:
            for line in lines:
                self.out.write(line + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Progress for people: on stderr, silent with --json."""
        if not self.args.json:
            self.err.write(text + "\n")
            self.err.flush()

    # -- delegate and jobs ----------------------------------------------------------------------------

    def delegate(self) -> int:
        a = self.args
        from_file = load_task_file(a.file) if a.file else {}
        flags = {
            "owner": a.owner,
            "repo": a.repo,
            "branchName": a.branchName,
            "taskTitle": a.taskTitle,
            "objective": a.objective,
            "prTitle": a.prTitle,
            "constraints": a.constraints,
            "acceptanceCriteria": a.acceptanceCriteria,
            "baseBranch": a.baseBranch,
        }
        task = build_task(from_file, flags)
        client = self.client()
        answer = client.delegate(task, idempotency_key=a.idempotency_key)
        if a.no_wait:
            self.emit(answer, [f"job  {answer.get('jobId')}", f"pr   {answer.get('html_url')}"])
            return Exit.OK
        self.note(f"PR #{answer.get('number')}: {answer.get('html_url')}")
        self.note(f"branch {answer.get('branchName')}, confirmation {answer.get('confirmationCode')}")
        self.note(f"following job {answer.get('jobId')} (Ctrl-C stops following; the job goes on)")
        job = self._follow(client, str(answer["jobId"]))
        return self._ended(job, {"delegation": answer, "job": job})

    def _follow(self, client: ApiClient, job_id: str, *, skip_steps: int = 0) -> dict[str, Any]:
        progress = Progress(self.err, live=self.err.isatty() and not self.args.json)
        shown = 0

        def on_step(entry: Any) -> None:
            nonlocal shown
            shown += 1
            if shown > skip_steps and not self.args.json:
                progress.step(entry)

        try:
            return follow(
                client,
                job_id,
                interval_s=self.args.interval,
                timeout_s=self.args.timeout,
                on_step=on_step,
                on_tick=progress.tick,
            )
        except KeyboardInterrupt:
            raise CliError(
                "stopped following",
                Exit.INTERRUPTED,
                hint=f"the job goes on: aipm jobs show {job_id} --follow",
            ) from None
        finally:
            progress.close()

    def _ended(self, job: dict[str, Any], value: object) -> int:
        self.emit(value, render.outcome(job))
        return Exit.OK if job.get("status") == render.SUCCESS else Exit.JOB_UNSUCCESSFUL

    def jobs(self) -> int:
        action: Callable[[], int] = getattr(self, f"jobs_{self.args.jobs_command}")
        return action()

    def jobs_list(self) -> int:
        a = self.args
        if not 1 <= a.limit <= 100:
            raise usage_error("--limit must be between 1 and 100")
        if a.repo and a.repo.count("/") != 1:
            raise usage_error(f"--repo must be OWNER/REPO, not {a.repo!r}")
        client = self.client()
        jobs: list[dict[str, Any]] = []
        cursor = a.cursor
        while True:
            page = client.jobs(status=a.status, repo=a.repo, limit=a.limit, cursor=cursor)
            jobs.extend(page.get("jobs") or [])
            cursor = page.get("nextCursor")
            if not (a.all and cursor):
                break
        lines = render.jobs_table(jobs) if jobs else ["no jobs"]
        if cursor:
            lines.append(f"more: aipm jobs list --cursor {cursor}")
        self.emit({"jobs": jobs, "nextCursor": cursor}, lines)
        return Exit.OK

    def jobs_show(self) -> int:
        client = self.client()
        job = client.job(self.args.job_id)
        if not self.args.follow:
            self.emit(job, render.job_details(job))
            return Exit.OK
        if job.get("status") in render.TERMINAL:  # --follow: the exit code tells how the job ended
            self.emit(job, render.job_details(job))
            return Exit.OK if job.get("status") == render.SUCCESS else Exit.JOB_UNSUCCESSFUL
        if not self.args.json:
            self.out.write("\n".join(render.job_details(job)) + "\n")
            self.out.flush()
        job = self._follow(client, self.args.job_id, skip_steps=len(job.get("timeline") or []))
        return self._ended(job, job)

    def jobs_cancel(self) -> int:
        job = self.client().cancel(self.args.job_id)
        self.emit(
            job, [f"job {job.get('jobId')}: {job.get('status')} — {job.get('reason') or ''}".rstrip(" —")]
        )
        return Exit.OK

    def jobs_retry(self) -> int:
        client = self.client()
        job = client.retry(self.args.job_id)
        if not self.args.follow:
            self.emit(job, [f"job {job.get('jobId')}: {job.get('status')} (attempts reset)"])
            return Exit.OK
        self.note(f"job {job.get('jobId')} queued again; following it")
        job = self._follow(client, self.args.job_id, skip_steps=len(job.get("timeline") or []))
        return self._ended(job, job)

    def jobs_logs(self) -> int:
        client = self.client()
        job = client.job(self.args.job_id)
        shown = job.get("outputTail") or ""
        if self.args.json:
            if self.args.follow:
                job = self._follow(client, self.args.job_id)
            render.print_json(
                self.out,
                {"jobId": job.get("jobId"), "status": job.get("status"), "outputTail": job.get("outputTail")},
            )
            return Exit.OK
        self.out.write(shown)
        self.out.flush()
        if not self.args.follow or job.get("status") in render.TERMINAL:
            if not shown:
                self.note(f"no agent output recorded for job {self.args.job_id} (status {job.get('status')})")
            return Exit.OK
        deadline = None if self.args.timeout is None else time.monotonic() + self.args.timeout
        while job.get("status") not in render.TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"job {self.args.job_id} is still {job.get('status')}", Exit.STILL_RUNNING)
            time.sleep(self.args.interval)
            job = client.job(self.args.job_id)
            tail = job.get("outputTail") or ""
            self.out.write(tail_delta(shown, tail))
            self.out.flush()
            shown = tail
        self.note(f"\njob ended: {job.get('status')}")
        return Exit.OK

    def workers(self) -> int:
        pool = self.client().workers()
        self.emit(pool, render.workers(pool))
        return Exit.OK

    # -- sign-in --------------------------------------------------------------------------------------

    def login(self) -> int:
        from aipm.cli.login import login_command

        return login_command(self.args, self.err)

    def logout(self) -> int:
        from aipm.cli.login import logout_command

        return logout_command(self.args, self.err)

    # -- local ----------------------------------------------------------------------------------------

    def local(self) -> int:
        from aipm.local.stack import run

        return run(self.args)

    # -- ops ------------------------------------------------------------------------------------------

    def ops(self) -> int:
        from aipm.cli.ops import Ops

        ops = Ops(self.args.stack, region=self.args.region, profile=self.args.profile)
        action: Callable[[Ops], int] = getattr(self, f"ops_{self.args.ops_command}")
        return action(ops)

    def ops_status(self, ops: Any) -> int:
        from aipm.cli.ops import STATUS_COMMANDS

        targets = [ops.target(self.args.instance)] if self.args.instance else ops.targets()
        self.note(f"asking {len(targets)} agent host(s) of {ops.stack} through SSM…")
        results = ops.run([t.instance_id for t in targets], STATUS_COMMANDS, comment="aipm ops status")
        reports = []
        lines: list[str] = []
        healthy = True
        for target, inv in zip(targets, results, strict=True):
            report = _parse_report(inv.stdout)
            ok = inv.status == "Success" and report is not None and not report.get("errors")
            healthy &= ok
            reports.append(
                {
                    "instanceId": target.instance_id,
                    "privateIp": target.private_ip,
                    "ssmStatus": inv.status,
                    "healthy": ok,
                    "report": report,
                    "stderr": inv.stderr[-2000:],
                }
            )
            lines += _status_lines(target.instance_id, target.private_ip, inv.status, report, inv.stderr)
        self.emit({"stack": ops.stack, "hosts": reports, "healthy": healthy}, lines)
        return Exit.OK if healthy else Exit.AWS

    def ops_logs(self, ops: Any) -> int:
        from aipm.cli.ops import SSM_OUTPUT_LIMIT, log_commands

        targets = [ops.target(self.args.instance)] if self.args.instance else ops.targets()
        ids = [t.instance_id for t in targets]
        if self.args.follow:
            self.note(f"following the agent log of {', '.join(ids)} in CloudWatch Logs (Ctrl-C stops)")

            def emit(line: str) -> None:
                self.out.write(line + "\n")
                self.out.flush()

            try:
                ops.follow_logs(ids, emit, since_s=self.args.since)
            except KeyboardInterrupt:
                return Exit.OK
            return Exit.OK
        commands = log_commands(self.args.lines)
        results = ops.run(ids, commands, comment="aipm ops logs")
        value = []
        for inv in results:
            value.append(
                {
                    "instanceId": inv.instance_id,
                    "ssmStatus": inv.status,
                    "stdout": inv.stdout,
                    "stderr": inv.stderr,
                }
            )
            if not self.args.json:
                self.out.write(f"==== {inv.instance_id} (SSM {inv.status})\n{inv.stdout}")
                if inv.stderr:
                    self.err.write(inv.stderr)
                if len(inv.stdout) >= SSM_OUTPUT_LIMIT:
                    self.note("(SSM returns at most 24,000 characters: use --lines or --follow for more)")
        if self.args.json:
            render.print_json(self.out, {"stack": ops.stack, "hosts": value})
        ok = all(inv.status == "Success" for inv in results)
        return Exit.OK if ok else Exit.AWS

    def ops_tunnel(self, ops: Any) -> int:
        from aipm.cli.ops import (
            OUT_AGENT_TOKEN_SECRET,
            OUT_POOL_PORT,
            OUT_PROCESSOR_PORT,
            require_session_manager,
        )

        target = ops.target(self.args.instance)
        ports = self.args.ports or [
            (p, p) for p in (ops.port(OUT_POOL_PORT, 8081), ops.port(OUT_PROCESSOR_PORT, 8082))
        ]
        require_session_manager()
        argvs = [ops.tunnel_argv(target, remote, local) for remote, local in ports]
        for remote, local in ports:
            self.note(f"forwarding 127.0.0.1:{local} -> {target.instance_id} {target.private_ip}:{remote}")
        secret = ops.outputs.get(OUT_AGENT_TOKEN_SECRET, "<AgentTokenSecretArn>")
        self.note(
            "the agent wants its token: TOKEN=$(aws secretsmanager get-secret-value --secret-id "
            f"{secret} --query SecretString --output text | jq -r .token)\n"
            f'  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{ports[0][1]}/health\n'
            "Ctrl-C closes the tunnel."
        )
        procs = [subprocess.Popen(argv) for argv in argvs]
        try:
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=10)
            return Exit.OK
        return Exit.OK if all(c == 0 for c in codes) else Exit.AWS

    def ops_shell(self, ops: Any) -> int:
        from pathlib import Path

        from aipm.cli.ops import require_session_manager

        try:
            from aipm.cli import ssh
        except ImportError:
            raise usage_error(
                "`aipm ops shell` needs paramiko", hint="pip install 'aipm-delegate[cli]'"
            ) from None

        target = ops.target(self.args.instance)
        require_session_manager()
        self.note(f"SSH as {self.args.user} to {target.instance_id} through an SSM session…")
        client = ssh.connect(
            target.instance_id,
            ops.ssh_proxy_argv(target),
            user=self.args.user,
            key_filename=self.args.identity,
            known_hosts=Path(self.args.known_hosts) if self.args.known_hosts else None,
            accept_new_host_key=self.args.accept_new_host_key,
        )
        try:
            if self.args.remote_command:
                return ssh.run_command(client, self.args.remote_command, self.out, self.err)
            return ssh.interactive(client, self.out, self.err)
        finally:
            client.close()


def _parse_report(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _status_lines(
    instance_id: str, private_ip: str | None, ssm_status: str, report: dict[str, Any] | None, stderr: str
) -> list[str]:
    lines = [f"host {instance_id} ({private_ip or 'no private IP'}): SSM command {ssm_status}"]
    if report is None:
        lines.append(
            "  no health report came back" + (f": {stderr.strip()[-300:]}" if stderr.strip() else "")
        )
        return lines
    unit = report.get("unit") or {}
    lines.append(
        f"  systemd aipm-agent: {unit.get('ActiveState', '?')}/{unit.get('SubState', '?')}, "
        f"restarts {unit.get('NRestarts', '?')}, since {unit.get('ExecMainStartTimestamp', '?')}"
    )
    pool = report.get("pool")
    if isinstance(pool, dict):
        workers = pool.get("workers") or []
        busy = sum(1 for w in workers if w.get("busy"))
        ready = sum(1 for w in workers if w.get("ready"))
        lines.append(
            f"  pool :8081 {pool.get('status')}: {len(workers)} slot(s), {ready} ready, {busy} busy, "
            f"{pool.get('queued', 0)} queued, up {pool.get('uptime', 0):.0f} s"
        )
        for w in workers:
            lines.append(
                f"    slot {w.get('id')}: {'busy ' + str(w.get('currentTask')) if w.get('busy') else 'idle'}"
                f"{'' if w.get('ready') else ' (NOT READY)'}, restarts {w.get('restarts', 0)}"
            )
    processor = report.get("processor")
    if isinstance(processor, dict):
        lines.append(f"  processor :8082 {processor.get('status')}, up {processor.get('uptime', 0):.0f} s")
    for problem in report.get("errors") or []:
        lines.append(f"  PROBLEM: {problem}")
    return lines


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `aipm` console script. Returns the exit code (see `aipm --help`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    cli = Cli(args, out, err)
    try:
        handler: Callable[[], int] = getattr(cli, args.command)
        return int(handler())
    except CliError as problem:
        err.write(f"aipm: error: {problem.message}\n")
        if problem.hint:
            err.write(f"  hint: {problem.hint}\n")
        err.flush()
        return int(problem.code)
    except KeyboardInterrupt:
        err.write("\naipm: interrupted\n")
        return int(Exit.INTERRUPTED)
