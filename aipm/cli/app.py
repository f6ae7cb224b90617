"""The `aipm` command line: delegate tasks, follow and manage jobs, run the local stack, operate a stack."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from aipm.cli import render
from aipm.cli.api import ApiClient
from aipm.cli.config import Settings, config_path, load_settings
from aipm.cli.errors import EXIT_CODES_HELP, CliError, Exit, usage_error
from aipm.cli.follow import Progress, follow, tail_delta
from aipm.cli.tasks import build_task, load_task_file
from lambda_src.records.models import JobStatus

JOB_STATUSES = tuple(status.value for status in JobStatus)
PREFIX_SEARCH_PAGES = 10  # a job-id prefix is looked up among the newest 1,000 jobs

MAIN_HELP = f"""\
examples:
  aipm local                                   # the whole pipeline on this machine (prints how to sign in)
  aipm login --domain https://SIGN-IN-DOMAIN --client-id CLIENT_ID     # once; then tokens are refreshed
  export AIPM_API_URL=http://127.0.0.1:PORT
  aipm delegate --repo aipm-demo/tools --title "Add export button" \\
                --objective "User can export data" --criterion "Button appears"
  aipm delegate -f task.yaml --no-wait         # prints the job id and the PR URL
  aipm jobs list --status failed -o yaml --fields jobId,status,prUrl
  aipm jobs show 3fa2c1 --follow --logs      # any unique prefix of a job id
  aipm jobs list -o json | jq -r '.jobs[].jobId'
  aipm ops status --stack Aipm-prod --region eu-west-1
  eval "$(aipm completion bash)"               # tab completion (bash, zsh or fish)

configuration (flags win over the environment, which wins over the profile):
  config file     {config_path()} ($AIPM_CONFIG), named profiles: `aipm config --help`
  AIPM_PROFILE    profile to use, for settings and sign-in (--profile; default: default_profile, else
                  `local`, which `aipm local` saves, else "default")
  AIPM_API_URL    API base URL (--api-url): the stack's ApiUrl output, or what `aipm local` prints
  AIPM_API_TOKEN  bearer token (--token); without it, the ID token `aipm login` cached for the profile
  AIPM_OUTPUT     table, json or yaml (-o)
  AIPM_STACK      CloudFormation stack name for `aipm ops` (--stack, default Aipm-prod)
  AWS_PROFILE, AWS_REGION  AWS credentials and region for `aipm ops`
  NO_COLOR        no colour (colour is used only on a terminal)

{EXIT_CODES_HELP}
"""

DELEGATE_HELP = """\
Only the repository, a title and an objective are needed. The task comes from flags and/or a YAML or JSON
file whose keys are the flags' names (or the API's field names); flags win:

  # task.yaml
  repo: aipm-demo/tools
  title: Add export button
  objective: User can export data
  criteria: [Button appears, Export works]
  constraints: Use existing button patterns   # optional, like branch, pr-title and base-branch

Defaults: the PR title is the task title; the branch is feature/<title as a slug>; the base branch is the
repository's default. The API adds a unique suffix to the branch. Without --no-wait, each step of the job
is printed as it happens until the job ends (with --logs, the agent's output too); the exit code says how
it ended (0 completed, 1 failed/timed_out/cancelled/no_changes/checks_failed, 5 --timeout passed).

examples:
  aipm delegate --repo aipm-demo/tools --title "Add export button" --objective "User can export data" \\
                --criterion "Button appears" --criterion "Export works"
  aipm delegate -f task.yaml --base-branch develop --logs
  aipm delegate -f task.yaml --no-wait -o json | jq -r .jobId
"""

OPS_HELP = """\
Reads the stack's CloudFormation outputs (AgentInstanceId or AgentAutoScalingGroupName, AgentPoolPort,
AgentProcessorPort, AgentLogGroup, ...) and reaches the agent host(s) through AWS Systems Manager only:
no SSH port and no public agent port exist. `tunnel` and `shell` need the AWS CLI v2 and its Session
Manager plugin on this machine. The runbook: the README's "Operations runbook" section.

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


CONFIG_HELP = """\
Named profiles live in a TOML file (AIPM_CONFIG, default ~/.config/aipm/config.toml):

  default_profile = "prod"            # optional; without it the `local` profile is used when present

  [profiles.local]                    # written by `aipm local` (0600: it holds the token)
  api_url = "http://127.0.0.1:8765"
  token = "..."

  [profiles.prod]
  api_url = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
  region = "eu-west-1"
  stack = "Aipm-prod"
  output = "table"                    # or json, yaml

Keys: api_url, token, output, stack, region, aws_profile. Choose with --profile NAME or AIPM_PROFILE;
flags and environment variables win over the profile.

examples:
  aipm config                         # the file, the profile in use and the effective settings
  aipm --profile prod jobs list
"""


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" suggestions for mistyped commands and options."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w-]+)'?", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            if close:
                message += f"\n  did you mean '{close[0]}'?"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = sorted(_all_flags(self))
            for word in unknown.group(1).split():
                close = (
                    difflib.get_close_matches(word.split("=")[0], flags, n=1) if word.startswith("-") else []
                )
                if close:
                    message += f"\n  did you mean '{close[0]}' (instead of '{word}')?"
        super().error(message)


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` and of its sub-commands (argparse reports unknown ones at the top)."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _all_flags(sub)
    return flags


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aipm-delegate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _global_options(parser: argparse.ArgumentParser, *, with_profile: bool = True) -> None:
    parser.add_argument("--api-url", help="API base URL (AIPM_API_URL)")
    parser.add_argument(
        "--token", help="API bearer token (prefer AIPM_API_TOKEN: command lines are visible to other users)"
    )
    if with_profile:
        parser.add_argument("--profile", dest="config_profile", help="configuration profile (AIPM_PROFILE)")
    parser.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), help="output format (AIPM_OUTPUT; default table)"
    )
    parser.add_argument("--json", action="store_true", help="the same as -o json")
    parser.add_argument(
        "--fields", help="with -o json/yaml: only these comma-separated fields (of each job in a list)"
    )
    parser.add_argument(
        "--no-color", action="store_true", help="no colour (also: NO_COLOR set, not a terminal)"
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="aipm",
        description="AIPM code delegation: a task becomes a pull request with AI-written code.",
        epilog=MAIN_HELP,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"aipm {_version()}")
    _global_options(parser)
    # The same options are accepted after the command too (`aipm jobs list -o json`). Under `ops`,
    # --profile is the AWS profile (as for the aws CLI); choose a configuration profile before `ops`.
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(common)
    ops_common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(ops_common, with_profile=False)
    ops_common.add_argument("--stack", help="stack name (AIPM_STACK)")
    ops_common.add_argument("--region", help="AWS region (AWS_REGION)")
    ops_common.add_argument("--profile", dest="aws_profile", help="AWS profile (AWS_PROFILE)")
    sub = _Subparsers(parser.add_subparsers(dest="command", metavar="COMMAND"), common)

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
    d.add_argument("--web", action="store_true", help="open the pull request in a browser")
    _follow_flags(d)

    # -- jobs -------------------------------------------------------------------------------------------
    j = sub.add_parser("jobs", help="list, show, cancel, retry jobs; their agent output")
    jsub = _Subparsers(j.add_subparsers(dest="jobs_command", metavar="ACTION"), common)
    jl = jsub.add_parser("list", help="jobs, newest first")
    jl.add_argument("--status", choices=JOB_STATUSES)
    jl.add_argument("--repo", help="OWNER/REPO")
    jl.add_argument(
        "--mine", action="store_true", help="only your own jobs (admins see everyone's otherwise)"
    )
    jl.add_argument("--limit", type=int, default=25, help="jobs per page (default 25)")
    jl.add_argument("--cursor", help="the nextCursor of the previous page")
    jl.add_argument("--all", action="store_true", help="follow nextCursor through every page")
    js = jsub.add_parser("show", help="one job: status, attempts, worker, commit, timeline")
    js.add_argument("job_id", help="the job id or any unique prefix of it")
    js.add_argument("--web", action="store_true", help="open the job's pull request in a browser")
    js.add_argument(
        "--follow", action="store_true", help="follow it until it ends; the exit code tells how it ended"
    )
    _follow_flags(js)
    jc = jsub.add_parser("cancel", help="cancel a job that has not ended (409 if it has)")
    jc.add_argument("job_id", help="the job id or any unique prefix of it")
    jr = jsub.add_parser("retry", help="queue an unsuccessful job again (409 if it cannot be)")
    jr.add_argument("job_id", help="the job id or any unique prefix of it")
    jr.add_argument("--follow", action="store_true", help="then follow it until it ends")
    _follow_flags(jr)
    jg = jsub.add_parser("logs", help="the tail of the agent's output for a job")
    jg.add_argument("job_id", help="the job id or any unique prefix of it")
    jg.add_argument("--follow", action="store_true", help="keep printing new output until the job ends")
    _follow_flags(jg)

    sub.add_parser("workers", help="the agent pool: agents, slots, busy/idle (from heartbeats)")
    sub.add_parser(
        "config",
        help="show the configuration file, profile and settings in use",
        description=CONFIG_HELP,
        formatter_class=fmt,
    )
    comp = sub.add_parser(
        "completion",
        help="print the shell code for tab completion",
        description='Tab completion through argcomplete. Add to ~/.bashrc: eval "$(aipm completion bash)"',
    )
    comp.add_argument("shell", nargs="?", default="bash", choices=("bash", "zsh", "fish"))

    # -- login / logout ---------------------------------------------------------------------------------
    from aipm.cli.login import add_login_arguments

    # Their own --profile (the sign-in's), so not the common options.
    add_login_arguments(
        sub.action.add_parser("login", help="sign in through the browser (Cognito managed login)")
    )
    add_login_arguments(
        sub.action.add_parser("logout", help="sign out: revoke the refresh token, drop the tokens")
    )

    # -- local ------------------------------------------------------------------------------------------
    from aipm.local.options import add_arguments as add_local_arguments

    loc = sub.add_parser(
        "local",
        help="run the whole pipeline on this machine until Ctrl-C",
        description="The local stack (moto, git forge, API gateway + the real Lambda handlers, the agent "
        "with the Kiro emulator) and the web console. Prints their URLs, the token, and the API URL last.",
    )
    add_local_arguments(loc)

    # -- ops --------------------------------------------------------------------------------------------
    # --stack, --region and --profile (the AWS profile here) go before or after the action.
    o = _Subparsers(sub.action, ops_common).add_parser(
        "ops", help="operate a deployed stack through SSM", description=OPS_HELP
    )
    osub = _Subparsers(o.add_subparsers(dest="ops_command", metavar="ACTION"), ops_common)
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
        self.action = action
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser: argparse.ArgumentParser = self.action.add_parser(name, parents=[self._common], **kwargs)
        return parser


def _follow_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs", action="store_true", help="while following, also print the agent's output as it comes"
    )
    parser.add_argument("--interval", type=_positive, default=1.0, help="seconds between polls (default 1)")
    parser.add_argument(
        "--timeout", type=_positive, default=None, help="stop following after this many seconds"
    )


# -- commands ---------------------------------------------------------------------------------------------


class Cli:
    """Runs one parsed command; writes results to `out` and progress/errors to `err`.

    `settings` holds what the flags did not say: the environment, then the configuration profile."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, settings: Settings) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.settings = settings
        self.output = "json" if getattr(args, "json", False) else (args.output or settings.output)
        self.fields = [f.strip() for f in (getattr(args, "fields", None) or "").split(",") if f.strip()]
        self.colour = render.use_colour(out, disabled=bool(getattr(args, "no_color", False)))
        self.quiet = self.output != "table"

    def client(self) -> ApiClient:
        api_url = self.args.api_url or self.settings.api_url
        if not api_url:
            raise usage_error(
                "no API URL",
                hint="set AIPM_API_URL (or --api-url, or a profile: `aipm config --help`): the stack's "
                "ApiUrl output, or run `aipm local`, which saves a `local` profile",
            )
        token = self.args.token or self.settings.token or None
        if token is not None:
            return ApiClient(api_url, token)
        from aipm.cli.login import CachedToken, TokenCache, profile_name

        signed_in = self.profile_name or profile_name(self.args)  # one name: config profile and sign-in
        return ApiClient(api_url, CachedToken(TokenCache(signed_in)))

    def emit(self, value: object, lines: Sequence[str]) -> None:
        if self.output != "table" or self.fields:
            try:
                shown = render.select_fields(value, self.fields)
            except KeyError as missing:
                raise usage_error(
                    f"no such field: {missing.args[0]}", hint="see -o json for the fields"
                ) from None
            if self.output == "yaml":
                render.print_yaml(self.out, shown)
            elif self.output == "json":
                render.print_json(self.out, shown)
            else:
                self.out.write("\n".join(render.fields_table(shown, self.fields)) + "\n")
        else:
            for line in lines:
                self.out.write(line + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Progress for people: on stderr, silent with -o json/yaml."""
        if not self.quiet:
            self.err.write(text + "\n")
            self.err.flush()

    def job_id(self, client: ApiClient, text: str) -> str:
        """The full job id for `text`: an id, or a prefix (4+ hex characters) that only one job has."""
        text = text.strip().lower()
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return text
        if not re.fullmatch(r"[0-9a-f]{4,31}", text):
            raise usage_error(
                f"not a job id: {text!r}",
                hint="job ids are 32 hex characters; any unique prefix of 4 or more works (`aipm jobs list`)",
            )
        matches: list[str] = []
        cursor = None
        for _ in range(PREFIX_SEARCH_PAGES):
            page = client.jobs(limit=100, cursor=cursor)
            matches += [
                j["jobId"] for j in page.get("jobs") or [] if str(j.get("jobId", "")).startswith(text)
            ]
            cursor = page.get("nextCursor")
            if not cursor:
                break
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CliError(f"no job id starts with {text}", Exit.USAGE, hint="see `aipm jobs list`")
        raise usage_error(
            f"{len(matches)} jobs start with {text}: {', '.join(m[: len(text) + 4] for m in matches[:5])}",
            hint="give more characters of the id",
        )

    def open_web(self, url: str | None) -> None:
        if not url:
            self.note("no pull request URL to open")
            return
        import webbrowser

        self.note(f"opening {url}")
        if not webbrowser.open(url):
            self.note("no browser found; open the URL above yourself")

    # -- settings ---------------------------------------------------------------------------------------

    def config(self) -> int:
        path = config_path()
        value = {
            "file": str(path),
            "exists": path.exists(),
            "profile": self.profile_name,
            "apiUrl": self.args.api_url or self.settings.api_url,
            "token": "set" if (self.args.token or self.settings.token) else None,
            "output": self.output,
            "stack": self.settings.stack,
            "region": self.settings.region,
        }
        lines = [f"{k + ':':<9} {v}" for k, v in value.items()]
        self.emit(value, lines)
        return Exit.OK

    profile_name: str | None = None

    def completion(self) -> int:
        from argcomplete import shell_integration

        self.out.write(shell_integration.shellcode(["aipm"], shell=self.args.shell))
        self.out.flush()
        return Exit.OK

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
        if a.web:
            self.open_web(answer.get("html_url"))
        if a.no_wait:
            self.emit(answer, [f"job  {answer.get('jobId')}", f"pr   {answer.get('html_url')}"])
            return Exit.OK
        self.note(f"PR #{answer.get('number')}: {answer.get('html_url')}")
        self.note(f"branch {answer.get('branchName')}, confirmation {answer.get('confirmationCode')}")
        self.note(f"following job {answer.get('jobId')} (Ctrl-C stops following; the job goes on)")
        job = self._follow(client, str(answer["jobId"]))
        return self._ended(job, {"delegation": answer, "job": job})

    def _follow(self, client: ApiClient, job_id: str, *, skip_steps: int = 0) -> dict[str, Any]:
        progress = Progress(self.err, live=self.err.isatty() and not self.quiet)
        shown = 0
        output = ""

        def on_step(entry: Any) -> None:
            nonlocal shown
            shown += 1
            if shown > skip_steps and not self.quiet:
                progress.step(entry)

        def on_tick(job: Any, elapsed_s: float) -> None:
            nonlocal output
            if getattr(self.args, "logs", False) and not self.quiet:
                tail = job.get("outputTail") or ""
                progress.output(tail_delta(output, tail))
                output = tail
            progress.tick(job, elapsed_s)

        try:
            return follow(
                client,
                job_id,
                interval_s=self.args.interval,
                timeout_s=self.args.timeout,
                on_step=on_step,
                on_tick=on_tick,
            )
        except KeyboardInterrupt:
            progress.close()
            raise Stopped(
                f"stopped following job {job_id}; the job goes on.\n"
                f"  follow it again: aipm jobs show {job_id} --follow\n"
                f"  stop it:         aipm jobs cancel {job_id}"
            ) from None
        finally:
            progress.close()

    def _ended(self, job: dict[str, Any], value: object) -> int:
        self.emit(value, render.outcome(job))
        return Exit.OK if job.get("status") == render.SUCCESS else Exit.JOB_UNSUCCESSFUL

    def jobs(self) -> int:
        action: Callable[[], int] = getattr(self, f"jobs_{self.args.jobs_command}")
        return action()

    def _status_line(self, job: dict[str, Any], suffix: str = "") -> str:
        status = str(job.get("status"))
        return f"job {job.get('jobId')}: {render.paint(status, status, self.colour)}{suffix}"

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
            page = client.jobs(status=a.status, repo=a.repo, limit=a.limit, cursor=cursor, mine=a.mine)
            jobs.extend(page.get("jobs") or [])
            cursor = page.get("nextCursor")
            if not (a.all and cursor):
                break
        lines = render.jobs_table(jobs, colour=self.colour) if jobs else ["no jobs"]
        if cursor:
            lines.append(f"more: aipm jobs list --cursor {cursor}")
        self.emit({"jobs": jobs, "nextCursor": cursor}, lines)
        return Exit.OK

    def jobs_show(self) -> int:
        client = self.client()
        self.args.job_id = self.job_id(client, self.args.job_id)
        job = client.job(self.args.job_id)
        if self.args.web:
            self.open_web(job.get("prUrl"))
        if not self.args.follow:
            self.emit(job, render.job_details(job))
            return Exit.OK
        if job.get("status") in render.TERMINAL:  # --follow: the exit code tells how the job ended
            self.emit(job, render.job_details(job))
            return Exit.OK if job.get("status") == render.SUCCESS else Exit.JOB_UNSUCCESSFUL
        if not self.quiet:
            self.out.write("\n".join(render.job_details(job)) + "\n")
            self.out.flush()
        job = self._follow(client, self.args.job_id, skip_steps=len(job.get("timeline") or []))
        return self._ended(job, job)

    def jobs_cancel(self) -> int:
        client = self.client()
        job = client.cancel(self.job_id(client, self.args.job_id))
        self.emit(
            job, [f"job {job.get('jobId')}: {job.get('status')} — {job.get('reason') or ''}".rstrip(" —")]
        )
        return Exit.OK

    def jobs_retry(self) -> int:
        client = self.client()
        self.args.job_id = self.job_id(client, self.args.job_id)
        job = client.retry(self.args.job_id)
        if not self.args.follow:
            self.emit(job, [f"job {job.get('jobId')}: {job.get('status')} (attempts reset)"])
            return Exit.OK
        self.note(f"job {job.get('jobId')} queued again; following it")
        job = self._follow(client, self.args.job_id, skip_steps=len(job.get("timeline") or []))
        return self._ended(job, job)

    def jobs_logs(self) -> int:
        client = self.client()
        self.args.job_id = self.job_id(client, self.args.job_id)
        job = client.job(self.args.job_id)
        shown = job.get("outputTail") or ""
        if self.quiet:
            if self.args.follow:
                job = self._follow(client, self.args.job_id)
            value = {
                "jobId": job.get("jobId"),
                "status": job.get("status"),
                "outputTail": job.get("outputTail"),
            }
            self.emit(value, [])
            return Exit.OK
        self.out.write(shown)
        self.out.flush()
        if not self.args.follow or job.get("status") in render.TERMINAL:
            if shown and not shown.endswith("\n"):
                self.out.write("\n")
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
        if shown and not shown.endswith("\n"):
            self.out.write("\n")
        self.note(f"job ended: {job.get('status')}")
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
        try:
            from aipm.local.stack import run
        except ImportError as err:
            raise usage_error(
                f"`aipm local` needs the local extra ({err.name} is not installed)",
                hint="pip install 'aipm-delegate[local]' (or `make install` in a clone)",
            ) from None

        return run(self.args)

    # -- ops ------------------------------------------------------------------------------------------

    def ops(self) -> int:
        from aipm.cli.ops import Ops

        a = self.args
        ops = Ops(
            getattr(a, "stack", None) or self.settings.stack,
            region=getattr(a, "region", None) or self.settings.region,
            profile=getattr(a, "aws_profile", None) or self.settings.aws_profile,
        )
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
            if not self.quiet:
                self.out.write(f"==== {inv.instance_id} (SSM {inv.status})\n{inv.stdout}")
                if inv.stderr:
                    self.err.write(inv.stderr)
                if len(inv.stdout) >= SSM_OUTPUT_LIMIT:
                    self.note("(SSM returns at most 24,000 characters: use --lines or --follow for more)")
        if self.quiet:
            self.emit({"stack": ops.stack, "hosts": value}, [])
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


class Stopped(Exception):
    """Ctrl-C while following: not an error; the message says what goes on and how to act on it."""


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the `aipm` console script. Returns the exit code (see `aipm --help`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        import argcomplete
    except ImportError:  # completion is optional: the `cli` extra brings it
        pass
    else:
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        if args.command is None or (args.command in ("jobs", "ops") and _action(args) is None):
            target = parser if args.command is None else _subparser(parser, args.command)
            out.write(target.format_help())
            return int(Exit.OK)
        profile_name, settings = load_settings(getattr(args, "config_profile", None))
        cli = Cli(args, out, err, settings)
        cli.profile_name = profile_name
        handler: Callable[[], int] = getattr(cli, args.command)
        return int(handler())
    except CliError as problem:
        err.write(f"aipm: error: {problem.message}\n")
        if problem.hint:
            err.write(f"  hint: {problem.hint}\n")
        err.flush()
        return int(problem.code)
    except Stopped as stopped:
        err.write(f"\n{stopped}\n")
        return int(Exit.INTERRUPTED)
    except KeyboardInterrupt:
        err.write("\naipm: interrupted\n")
        return int(Exit.INTERRUPTED)


def _action(args: argparse.Namespace) -> str | None:
    value = getattr(args, f"{args.command}_command", None)
    return str(value) if value else None


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)
