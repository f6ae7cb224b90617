"""The local stack (SPEC §7): the whole pipeline on loopback with no AWS account and no GitHub.

Processes: a moto server (DynamoDB, DynamoDB Streams, SSM, Secrets Manager, Cognito user pools), the
sign-in (`aipm.local.signin`: the OIDC stand-in for Cognito managed login, and a demo person), the git
forge (real bare repositories + a GitHub-compatible API), the gateway process (API Gateway + the real
Lambda handlers), and one or more real agents with the Kiro emulator profile, and the web console
(`aipm.local.console`, the API's CORS origin). Only endpoints and credentials differ from the cloud.

`python -m aipm.local.stack` (or `aipm local`) keeps it up until Ctrl-C and prints the API's base URL last,
on a line of its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import boto3

from aipm.cli.login import DEFAULT_PORT
from aipm.local import processes
from aipm.local.bootstrap import (
    create_idempotency_table,
    create_records_table,
    put_parameter,
    put_token_secret,
)
from aipm.local.clis import cache_dir, path_with_clis
from aipm.local.console import ConsoleServer
from aipm.local.forge import Forge
from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import REAL_CLIS, client_env, seed_home
from aipm.local.moto_server import MotoServer, free_port
from aipm.local.options import add_arguments
from aipm.local.signin import LocalSignIn
from ec2_agent.profiles import builtin_profile, builtin_profile_names
from lambda_src.records.store import JobStore

log = logging.getLogger(__name__)

REGION = "us-east-1"
STAGE = "local"
DEMO_OWNER = "aipm-demo"
DEMO_REPO = "tools"
DEMO_FILES = {
    "README.md": "# tools\n\nA small repository that the AIPM local stack delegates tasks against.\n",
    "tools/__init__.py": '"""Small tools."""\n',
}


class StackError(RuntimeError):
    """A part of the stack did not start or answer; the message names it and ends with its log's last lines
    (the log itself goes when the work folder is removed)."""


LOG_TAIL_LINES = 12


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a child's log, each indented two spaces ("" if it is missing or empty)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "".join(f"\n  {line}" for line in text.splitlines()[-lines:])


@dataclass(frozen=True)
class StackOptions:
    pool_size: int = 2
    agents: int = 1
    cli_profile: str = "emulator"
    emulator_work_s: float = 0.3
    job_timeout_s: float = 120
    lease_s: float = 30
    sweep_interval_s: float = 5
    reclaim_interval_s: float | None = None  # default: half the lease
    heartbeat_interval_s: float = 5
    max_attempts: int = 3
    stop_grace_s: float = 30  # how long an agent may take to finish its jobs after SIGTERM
    id_token_s: int = 3600  # the app client's IdTokenValidity (Cognito's default: one hour)
    console_dir: Path | None = None  # serve the console from here instead of aipm/web/ (tests)
    cli_port: int = DEFAULT_PORT  # the `aipm login` loopback port registered on the app client
    api_port: int = 0  # 0: any free port; the console is on api_port + 1 and the forge on + 2 otherwise
    agent_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class AgentProcess:
    """One agent child process and what reaches it."""

    index: int
    pool_port: int
    processor_port: int
    attach_port: int
    work_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def agent_id(self) -> str:
        return f"local-agent-{self.index}"


class LocalStack:
    """Starts and stops every local process. Use as a context manager."""

    def __init__(self, root: Path, options: StackOptions | None = None) -> None:
        self.root = root
        self.options = options or StackOptions()
        self.agent_token = secrets.token_urlsafe(24)
        self.github_token = secrets.token_urlsafe(24)
        self.webhook_secret = secrets.token_urlsafe(24)  # the forge signs its webhook deliveries with it
        self.records_table = "aipm-local-records"
        self.idempotency_table = "aipm-local-idempotency"
        self.logs = root / "logs"
        self.run_id = uuid.uuid4().hex
        self._pgid: int | None = None  # the process group every child joins (see aipm.local.processes)
        self._groups: set[int] = set()
        self.moto = MotoServer(log_path=None, env=self._marked_env(dict(os.environ)), process_group=0)
        self.on_progress: Callable[[str], None] = lambda _text: None
        port = self.options.api_port
        self.forge = Forge(root / "forge", token=self.github_token, port=port + 2 if port else 0)
        self.agents: list[AgentProcess] = []
        self._gateway: subprocess.Popen[bytes] | None = None
        self.console: ConsoleServer | None = None
        self.sign_in: LocalSignIn | None = None
        self.api_url = ""
        self.demo_repo = Path()
        self._log_files: list[IO[bytes]] = []
        self.standin: ModelStandin | None = None  # the model stand-in, for a profile of a real CLI
        self._cli_env: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and wait until each part answers. Raises StackError naming the part at fault."""
        known = builtin_profile_names()
        if self.options.cli_profile not in (*known, "generic"):
            raise StackError(
                f"unknown CLI profile {self.options.cli_profile!r}; known: {', '.join(known)}, generic"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        self.on_progress("starting the AWS emulator (moto)…")
        try:
            self.moto.start()
        finally:
            if self.moto.pid is not None:
                self._pgid = self.moto.pid
                self._groups.add(self.moto.pid)
        aws = self.aws_env()
        self.on_progress("creating the tables, parameters and secrets…")
        stream_arn = self._bootstrap(aws)
        self.on_progress("starting the git forge…")
        self.forge.start()
        self.demo_repo = self.forge.create_repository(DEMO_OWNER, DEMO_REPO, files=DEMO_FILES)
        port = self.options.api_port
        console_port = port + 1 if port else 0
        try:
            console = (
                ConsoleServer(self.options.console_dir, port=console_port)
                if self.options.console_dir
                else ConsoleServer(port=console_port)
            )
        except OSError as err:  # its pages are read at construction; listening starts below
            raise StackError(f"the console's pages cannot be read: {err}") from None
        try:
            self.console = console.start()
        except OSError as err:
            raise StackError(f"the console cannot listen on port {console_port}: {err.strerror}") from None
        self._start_standin()
        for index in range(1, self.options.agents + 1):
            self.on_progress(f"starting agent {index} ({self.options.pool_size} slots)…")
            self.start_agent(index)
        first = self.agents[0]
        self.console.attach_url = f"ws://127.0.0.1:{first.attach_port}/attach"
        ssm = self.client("ssm")
        put_parameter(ssm, f"/aipm/{STAGE}/agent/endpoint", f"http://127.0.0.1:{first.processor_port}")
        put_parameter(ssm, f"/aipm/{STAGE}/agent/pool-port", str(first.pool_port))
        put_parameter(ssm, f"/aipm/{STAGE}/agent/processor-port", str(first.processor_port))
        self.on_progress("signing in the demo person (local OIDC stand-in)…")
        self.sign_in = LocalSignIn(
            self.client("cognito-idp"),
            endpoint_url=self.moto.endpoint_url,
            region=REGION,
            app_origin=self.console.origin,
            id_token_s=self.options.id_token_s,
            cli_port=self.options.cli_port,
        ).start()
        self.console.auth = self.sign_in.console_config()
        self.on_progress("starting the API gateway…")
        self._start_gateway(stream_arn)
        self.console.api_url = self.api_url
        # The forge's comments, reviews and labels reach the API as GitHub's webhook deliveries do.
        self.forge.add_webhook(f"{self.api_url}/api/github/webhook", self.webhook_secret)

    def stop(self) -> None:
        """Stop every process: agents first (SIGTERM, `options.stop_grace_s` to finish), then the gateway and
        moto, then SIGKILL whatever of the run is left — by process group, then by the run's marker variable
        (grandchildren in sessions of their own). Idempotent."""
        for agent in self.agents:
            self._terminate(agent.proc, grace_s=self.options.stop_grace_s)
        self._terminate(self._gateway, grace_s=5)
        if self.console is not None:
            self.console.stop()
            self.console = None
        if self.sign_in is not None:
            self.sign_in.stop()
            self.sign_in = None
        self.forge.stop()
        if self.standin is not None:
            self.standin.close()
        self.moto.stop()
        self.kill_all(grace_s=2)
        for f in self._log_files:
            f.close()
        self._log_files.clear()

    def _check_ports(self) -> None:
        """Refuse to start when a fixed port is taken (before starting anything), naming it and --port."""
        base = self.options.api_port
        if not base:
            return
        for port, what in ((base, "API"), (base + 1, "console"), (base + 2, "forge")):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # As the servers themselves bind: connections of a previous run in TIME_WAIT do not count.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError as err:
                    raise StackError(
                        f"port {port} (the {what}) cannot be used ({err.strerror}) — is another `aipm local` "
                        "running? Choose other ports with --port N (API on N, console on N+1, forge on N+2)"
                    ) from None

    def kill_all(self, *, grace_s: float = 0) -> None:
        """End every process this stack started, now: SIGKILL to its process group(s), then SIGTERM and
        (after `grace_s`) SIGKILL to any process carrying this run's marker. Safe in a signal handler."""
        ours = {info.pgid for info in processes.marked(processes.STACK_MARKER, self.run_id)}
        for pgid in self._groups & ours:  # a group with none of ours left may be another's by now
            processes.signal_group(pgid, signal.SIGKILL)
        processes.kill_marked(processes.STACK_MARKER, self.run_id, grace_s=grace_s)

    def _marked_env(self, env: dict[str, str]) -> dict[str, str]:
        env[processes.STACK_MARKER] = self.run_id
        return env

    def _popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a child in the stack's process group (a new one if that group has ended)."""
        if self._pgid is not None:
            try:
                return subprocess.Popen(argv, process_group=self._pgid, **kwargs)
            except (PermissionError, ProcessLookupError, subprocess.SubprocessError):
                log.warning("the stack's process group %s is gone; starting a new one", self._pgid)
        proc = subprocess.Popen(argv, process_group=0, **kwargs)
        self._pgid = proc.pid
        self._groups.add(proc.pid)
        return proc

    # -- parts ------------------------------------------------------------------------------------

    def _start_standin(self) -> None:
        """For a profile of a real CLI (Gemini CLI, Qwen Code, Claude Code; installed by `make clis`): the
        model stand-in on loopback, the CLI's pristine home seeded for it, and the agent's environment
        pointing the CLI at it with the pinned CLIs first on PATH and mounted in the sandbox."""
        try:
            profile = builtin_profile(self.options.cli_profile)
        except ValueError:  # "generic": configured by the caller's agent_env
            return
        cli = Path(profile.argv[0]).name
        if cli not in REAL_CLIS:
            return
        self.on_progress(f"starting the model stand-in for {cli}…")
        self.standin = ModelStandin(log_file=self.logs / "model-standin.jsonl").start()
        seed = self.root / "cli-home-seed"
        seed_home(cli, seed, self.standin.base_url)
        self._cli_env = client_env(cli, self.standin.base_url) | {
            "PATH": path_with_clis(),
            "AIPM_CLI_HOME_SEED": str(seed),
            "AIPM_SANDBOX_RO_BINDS": json.dumps([str(cache_dir())]),
        }

    @property
    def api_token(self) -> str:
        """A valid ID token of the demo person (signed in at start; refreshed when it is due)."""
        assert self.sign_in is not None, "the stack is not started"
        return self.sign_in.id_token()

    def aws_env(self) -> dict[str, str]:
        """Environment that points boto3 at the local emulator."""
        return {
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for `service` pointed at the local emulator."""
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.moto.endpoint_url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the local emulator accepts any key
        )

    def store(self) -> JobStore:
        """The records layer on this stack's table (what the API and the agent use)."""
        return JobStore(self.records_table, self.client("dynamodb"))

    def _bootstrap(self, aws: Mapping[str, str]) -> str:
        ddb = self.client("dynamodb")
        stream_arn = create_records_table(ddb, self.records_table)
        create_idempotency_table(ddb, self.idempotency_table)
        sm = self.client("secretsmanager")
        put_token_secret(sm, f"aipm/{STAGE}/github", self.github_token)
        put_token_secret(sm, f"aipm/{STAGE}/agent-token", self.agent_token)
        sm.create_secret(
            Name=f"aipm/{STAGE}/github-webhook", SecretString=json.dumps({"secret": self.webhook_secret})
        )
        return stream_arn

    def _base_env(self) -> dict[str, str]:
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH"}
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(self.aws_env())
        env["PYTHONUNBUFFERED"] = "1"
        env.update(processes.inherited_markers())
        return self._marked_env(env)

    def start_agent(self, index: int) -> AgentProcess:
        """Start (or restart) agent `index` and wait until its API answers."""
        existing = next((a for a in self.agents if a.index == index), None)
        if existing is None:
            work_dir = self.root / f"agent-{index}"
            env = self._base_env()
            env.update(
                AIPM_AGENT_ID=f"local-agent-{index}",
                AIPM_RECORDS_TABLE=self.records_table,
                AIPM_GITHUB_SECRET_ID=f"aipm/{STAGE}/github",
                AIPM_AGENT_TOKEN_SECRET_ID=f"aipm/{STAGE}/agent-token",
                AIPM_GITHUB_API_URL=self.forge.api_url,
                AIPM_GIT_BASE_URL=self.forge.base_url,
                AIPM_BIND_HOST="127.0.0.1",
                AIPM_POOL_SIZE=str(self.options.pool_size),
                AIPM_CLI_PROFILE=self.options.cli_profile,
                AIPM_WORK_DIR=str(work_dir),
                AIPM_JOB_TIMEOUT_S=str(self.options.job_timeout_s),
                AIPM_LEASE_S=str(self.options.lease_s),
                AIPM_SWEEP_INTERVAL_S=str(self.options.sweep_interval_s),
                AIPM_RECLAIM_INTERVAL_S=str(self.options.reclaim_interval_s or self.options.lease_s / 2),
                AIPM_HEARTBEAT_INTERVAL_S=str(self.options.heartbeat_interval_s),
                KIRO_EMULATOR_WORK_S=str(self.options.emulator_work_s),
                AIPM_ALLOWED_OWNERS=DEMO_OWNER,
            )
            if self.console is not None:
                env["AIPM_CONSOLE_ORIGIN"] = self.console.origin
            env.update(self._cli_env)
            env.update(self.options.agent_env)
            existing = AgentProcess(
                index=index,
                pool_port=free_port(),
                processor_port=free_port(),
                attach_port=free_port(),
                work_dir=work_dir,
                env=env,
                log_path=self.logs / f"agent-{index}.log",
            )
            self.agents.append(existing)
        existing.env["AIPM_POOL_PORT"] = str(existing.pool_port)
        existing.env["AIPM_PROCESSOR_PORT"] = str(existing.processor_port)
        existing.env["AIPM_ATTACH_PORT"] = str(existing.attach_port)
        out = existing.log_path.open("ab")
        self._log_files.append(out)
        existing.proc = self._popen(
            [sys.executable, "-m", "ec2_agent"], env=existing.env, stdout=out, stderr=subprocess.STDOUT
        )
        self._wait_agent(existing)
        return existing

    def _wait_agent(self, agent: AgentProcess, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert agent.proc is not None
            if agent.proc.poll() is not None:
                raise StackError(
                    f"agent {agent.index} exited at start-up (status {agent.proc.returncode}); "
                    f"its log {agent.log_path.name} ends:{log_tail(agent.log_path)}"
                )
            health = self.agent_health(agent)
            if health is not None and all(w["ready"] for w in health["workers"]):
                return
            time.sleep(0.05)
        raise StackError(
            f"agent {agent.index} did not become ready within {timeout_s} s; "
            f"its log {agent.log_path.name} ends:{log_tail(agent.log_path)}"
        )

    def agent_health(self, agent: AgentProcess) -> dict[str, Any] | None:
        """The agent's /health on its pool port, or None if it does not answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{agent.pool_port}/health",
            headers={"Authorization": f"Bearer {self.agent_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310
                return dict(json.load(resp))
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def _start_gateway(self, stream_arn: str) -> None:
        assert self.sign_in is not None
        env = self._base_env()
        env.update(
            RECORDS_TABLE=self.records_table,
            IDEMPOTENCY_TABLE=self.idempotency_table,
            GITHUB_SECRET_ID=f"aipm/{STAGE}/github",
            GITHUB_WEBHOOK_SECRET_ID=f"aipm/{STAGE}/github-webhook",
            GITHUB_API_URL=self.forge.api_url,
            ALLOWED_ORIGIN=self.console.origin if self.console else "http://127.0.0.1",
            JOB_MAX_ATTEMPTS=str(self.options.max_attempts),
            AGENT_ENDPOINT_PARAM=f"/aipm/{STAGE}/agent/endpoint",
            AGENT_TOKEN_SECRET_ID=f"aipm/{STAGE}/agent-token",
            POWERTOOLS_LOG_LEVEL="WARNING",
        )
        out = (self.logs / "gateway.log").open("ab")
        self._log_files.append(out)
        self._gateway = self._popen(
            [
                sys.executable,
                *("-m", "aipm.local.gateway", "--port", str(self.options.api_port)),
                *("--stream-arn", stream_arn),
                *("--issuer", self.sign_in.issuer, "--audience", self.sign_in.client_id),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
        )
        assert self._gateway.stdout is not None
        ready = _read_ready_line(self._gateway.stdout, "gateway ready ", timeout_s=30)
        if ready is None:
            log_path = self.logs / "gateway.log"
            raise StackError(f"the gateway did not start; its log {log_path.name} ends:{log_tail(log_path)}")
        self.api_url = ready
        threading.Thread(target=_drain, args=(self._gateway.stdout, out), daemon=True).start()

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None, *, grace_s: float) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    # -- calling the API --------------------------------------------------------------------------

    def api(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Call the local API as the frontend would; returns (status, JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - loopback URL we built
            f"{self.api_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                return resp.status, dict(json.load(resp))
        except urllib.error.HTTPError as err:
            return err.code, dict(json.load(err))


TERMINAL_STATUSES = frozenset(
    {"completed", "failed", "timed_out", "cancelled", "no_changes", "checks_failed"}
)


def wait_for_job(
    stack: LocalStack,
    job_id: str,
    *,
    timeout_s: float = 120,
    interval_s: float = 0.1,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Follow a job through the API, as the frontend does, until it ends; returns the final job.

    `on_step` sees each new timeline entry once. Raises StackError if the API fails or time runs out.
    """
    seen = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, job = stack.api("GET", f"/api/jobs/{job_id}")
        if status != 200:
            raise StackError(f"GET /api/jobs/{job_id} answered {status}: {job}")
        for entry in job["timeline"][seen:]:
            if on_step is not None:
                on_step(entry)
        seen = len(job["timeline"])
        if job["status"] in TERMINAL_STATUSES:
            return job
        time.sleep(interval_s)
    raise StackError(f"job {job_id} did not end within {timeout_s} s")


def _read_ready_line(stream: IO[bytes], prefix: str, *, timeout_s: float) -> str | None:
    """The rest of the first line starting with `prefix`, read within `timeout_s`; None otherwise."""
    found: list[str] = []

    def read() -> None:
        for raw in stream:
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                found.append(line.removeprefix(prefix))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    return found[0] if found else None


def _drain(stream: IO[bytes], sink: IO[bytes]) -> None:
    for line in stream:
        sink.write(line)


class _Stopper:
    """SIGINT/SIGTERM handling for `run`: the first signal asks for a graceful stop; a second one (a double
    Ctrl-C) kills every process of the stack at once. The work folder is removed either way."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.stack: LocalStack | None = None
        self.started = False
        self.signals = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals == 1:
            self.requested.set()
            if not self.started:  # still starting: stop at once, through the context manager
                raise KeyboardInterrupt
            return
        print("\nsecond signal: killing every process of the local stack now", file=sys.stderr, flush=True)
        if self.stack is not None:
            self.stack.kill_all()


def run(args: argparse.Namespace) -> int:
    """Run the local stack until Ctrl-C or SIGTERM; the API's base URL is the last line printed.

    Every line before it is progress or how to use the stack; each start-up step is printed as it begins.
    On the first Ctrl-C/SIGTERM the agents get `--stop-grace-s` to finish, then everything is stopped; on a
    second one everything is killed. The work folder is removed unless `--keep` (then its path is printed).
    """
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="aipm-local-"))
    options = StackOptions(
        pool_size=args.slots,
        agents=args.agents,
        emulator_work_s=args.work_s,
        stop_grace_s=args.stop_grace_s,
        cli_profile=args.cli,
        api_port=args.port,
    )
    code = 0
    stopper = _Stopper()
    previous = {sig: signal.signal(sig, stopper) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:4.1f} s] {text}", flush=True)

    try:
        stack = LocalStack(root, options)
        stack.on_progress = progress
        stopper.stack = stack
        progress(f"work folder {root}")
        try:
            with stack:
                stopper.started = True
                _save_local_profile(stack, progress)
                _print_usage(stack)
                stopper.requested.wait()
                progress("stopping: the agents finish their jobs, then every process ends…")
        except KeyboardInterrupt:
            progress("interrupted while starting; stopped every process")
        except StackError as problem:
            print(f"aipm local: error: {problem}", file=sys.stderr, flush=True)
            code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep:
            print(f"kept the work folder {root} (--keep)", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("stopped", flush=True)
    return code


def _save_local_profile(stack: LocalStack, progress: Callable[[str], None]) -> None:
    """Save the stack's URL as the CLI's `local` profile and the demo person's sign-in under the same name
    (as `aipm login --profile local` would), so `aipm` commands reach this stack signed in, with no setup."""
    from aipm.cli.config import LOCAL_PROFILE, save_profile
    from aipm.cli.errors import CliError
    from aipm.cli.login import Session, TokenCache

    try:
        path = save_profile(LOCAL_PROFILE, {"api_url": stack.api_url})
        if stack.sign_in is not None:
            TokenCache(LOCAL_PROFILE).save(Session(stack.sign_in.settings, stack.sign_in.tokens()))
    except (CliError, OSError) as err:
        progress(f"could not save the CLI profile `{LOCAL_PROFILE}`: {err}")
        return
    progress(f"saved the CLI profile `{LOCAL_PROFILE}` in {path}: `aipm jobs list` now reaches this stack")


def _print_usage(stack: LocalStack) -> None:
    assert stack.sign_in is not None and stack.sign_in.demo is not None
    sign_in, demo = stack.sign_in, stack.sign_in.demo
    if stack.console is not None:
        print(f"Console:    {stack.console.url}  (Sign in as the demo person below)")
    print(f"Sign-in:    {sign_in.settings.domain}  (the local stand-in for Cognito managed login)")
    print(f"  e-mail    {demo.email}")
    print(f"  password  {demo.password}")
    print(f"  TOTP key  {demo.totp_secret}  (add it to an authenticator app: {demo.otpauth_uri})")
    print(f"  code now: python -c \"import pyotp; print(pyotp.TOTP('{demo.totp_secret}').now())\"")
    print(f"Forge:      {stack.forge.base_url}  (repository {DEMO_OWNER}/{DEMO_REPO})")
    if stack.console is not None:
        print(f"Attach:     {stack.console.attach_url}  (the console's terminal on a job's branch)")
        print(f"  token     {stack.agent_token}  (the agent's token, which the terminal asks for)")
    print(f"Logs:       {stack.logs}")
    print("CLI:")
    print(f"  export AIPM_API_URL={stack.api_url}")
    port = "" if sign_in.cli_port == DEFAULT_PORT else f" --port {sign_in.cli_port}"
    print(f"  aipm login --domain {sign_in.settings.domain} --client-id {sign_in.client_id}{port}")
    print(f"  aipm delegate --repo {DEMO_OWNER}/{DEMO_REPO} --title 'Add hello' --objective 'Say hello'")
    print(f"ID token:   {stack.api_token}  (the demo person's, for curl; it expires)")
    print("Try:")
    print(
        f"  curl -s -X POST {stack.api_url}/api/personal-delegate "
        f"-H 'Authorization: Bearer {stack.api_token}' "
        f"""-H 'Content-Type: application/json' -d '{{"owner":"{DEMO_OWNER}","repo":"{DEMO_REPO}","""
        """"branchName":"feature/hello","taskTitle":"Add hello","objective":"Say hello","""
        """"prTitle":"feat: hello","acceptanceCriteria":["It greets"]}'"""
    )
    print(stack.api_url, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the AIPM local stack until Ctrl-C.")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
