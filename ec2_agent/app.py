"""Composition root of the agent: builds the pool, runner, HTTP servers from validated settings."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import boto3

from ec2_agent.attach import AttachServer
from ec2_agent.config import AgentSettings, ConfigError, default_repository, owners
from ec2_agent.http_api import ApiServer, ServerLimits, pool_routes, processor_routes
from ec2_agent.intake import IntakeConfig, JobIntake
from ec2_agent.pool import AgentPool, PoolConfig
from ec2_agent.profiles import CliProfile, builtin_profile, generic_profile, seed_home
from ec2_agent.runner import JobRunner, RunnerConfig, SlotState
from ec2_agent.sandbox import (
    FORBIDDEN_PREFIXES,
    SYSTEM_PATH,
    WORKSPACE,
    CliUser,
    Sandbox,
    SandboxFault,
    SandboxLimits,
    SandboxPolicy,
)
from ec2_agent.secrets import TokenSecret, github_credentials
from ec2_agent.sessions import AgentSession, SessionError, TerminalSession, open_session
from ec2_agent.workspace import Git, Workspace, install_credential_helper
from lambda_src.github.client import GitHubClient
from lambda_src.records.store import JobStore

log = logging.getLogger(__name__)


def profile_for(settings: AgentSettings) -> CliProfile:
    """The CLI profile named by AIPM_CLI_PROFILE."""
    if settings.cli_profile == "generic":
        assert settings.generic_profile is not None
        return generic_profile(settings.generic_profile)
    return builtin_profile(settings.cli_profile, kiro_command=settings.kiro_command)


def home_seed(profile: CliProfile, settings: AgentSettings) -> Path | None:
    """The seed of the CLI's pristine home: AIPM_CLI_HOME_SEED (if set) with the profile's ``home_files``
    written over it (JSON settings merged), in ``<work dir>/homes/<profile>.seed``. Raises OSError."""
    if not profile.home_files:
        return settings.cli_home_seed
    seed = settings.work_dir / "homes" / f"{profile.name}.seed"
    shutil.rmtree(seed, ignore_errors=True)
    if settings.cli_home_seed is not None:
        shutil.copytree(settings.cli_home_seed, seed, symlinks=True)
    seed_home(profile, seed, workspace=WORKSPACE)
    return seed


def interpreter_dirs(command: Path) -> list[str]:
    """What a script's interpreter needs besides its own folder: for a `#!` line naming an interpreter by
    path (not through `env`), the interpreter's resolved folder, and when that folder is a Python virtual
    environment's `bin` (a `pyvenv.cfg` beside it: PEP 405), the environment (its site-packages) and the
    base installation it links to (the
    `home` key's parent: pip's aider-chat venv runs `bin/python` → e.g. ~/.pyenv/versions/3.11.7, whose
    standard library the venv does not copy). Unreadable or binary commands give nothing."""
    try:
        with command.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode("utf-8", "replace").split()
    if not words or not words[0].startswith("/") or Path(words[0]).name == "env":
        return []
    interpreter = Path(words[0])
    found = [str(interpreter.parent), str(interpreter.resolve().parent)]
    config = interpreter.parent.parent / "pyvenv.cfg"
    try:
        lines = config.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    found.append(str(interpreter.parent.parent))  # the venv itself: pyvenv.cfg and its site-packages
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip().startswith("/"):
            found.append(str(Path(value.strip()).resolve().parent))
    return found


def _may_mount(path: str, settings: AgentSettings) -> bool:
    """Never a folder holding the agent's state, whatever named it (a venv made from a real /bin/python3
    names `home = /bin`, whose parent is /): nothing in /etc or the work dir (slots, homes, the git store),
    nor a folder that holds either or the agent's own home (a CLI installed under that home, as pyenv's
    Python is, may be mounted). A refused one is logged."""
    resolved = Path(path).resolve()
    inside = [settings.work_dir.resolve(), Path("/etc")]
    refused = [g for g in [*inside, Path.home().resolve()] if g.is_relative_to(resolved)]
    refused += [g for g in inside if resolved.is_relative_to(g)]
    if refused:
        log.warning("not mounted into the sandbox: it holds the agent's state", extra={"path": path})
    return not refused


def sandbox_policy(profile: CliProfile, settings: AgentSettings) -> SandboxPolicy:
    """What the profile's CLI has inside its sandbox: its installation read-only (the emulator: this
    Python and this package; any other CLI: the directory of its resolved command, plus
    AIPM_SANDBOX_RO_BINDS), the variables its profile allows, its seeded home, its network
    (AIPM_SANDBOX_NETWORK; the emulator needs none), its egress proxy (AIPM_CLI_PROXY), its resource
    limits (AIPM_SANDBOX_PROCESSES_MAX, ..._FILE_SIZE_MIB, ..._PROCESS_MEMORY_MIB, ..._TMP_SIZE_MIB,
    ..._CPU_NICE)."""
    names = dict.fromkeys(
        n for n in (*profile.env_allow, *profile.env) if not n.upper().startswith(FORBIDDEN_PREFIXES)
    )
    binds: list[str] = [str(p) for p in settings.sandbox_ro_binds]
    path = SYSTEM_PATH
    network = settings.sandbox_network
    if profile.name == "emulator":
        package = Path(__file__).resolve().parent
        binds += [sys.prefix, sys.base_prefix, str(package)]
        network = network or "none"
    else:
        found = shutil.which(profile.argv[0])
        if found is not None:
            binds += [
                str(Path(found).parent),
                str(Path(found).resolve().parent),
                *interpreter_dirs(Path(found)),
            ]
            path = f"{Path(found).parent}:{path}"  # the CLI's folder first (it may hold its own node)
    system = ("/usr/", "/bin", "/lib")  # mounted already
    unique = [b for b in dict.fromkeys(binds) if not b.startswith(system) and _may_mount(b, settings)]
    return SandboxPolicy(
        env_allow=tuple(names),
        ro_binds=tuple((b, b) for b in unique),
        network=network or "host",
        home_seed=home_seed(profile, settings),
        path=path,
        setenv=proxy_environment(settings.cli_proxy),
        limits=SandboxLimits(
            processes_max=settings.sandbox_processes_max,
            file_size_mib=settings.sandbox_file_size_mib,
            process_memory_mib=settings.sandbox_process_memory_mib,
            tmp_size_mib=settings.sandbox_tmp_size_mib,
            cpu_nice=settings.sandbox_cpu_nice,
        ),
    )


def proxy_environment(proxy: str | None) -> tuple[tuple[str, str], ...]:
    """The variables that send a CLI's HTTP(S) through AIPM_CLI_PROXY (both spellings: curl and most
    libraries read the lower-case ones, others the upper-case). On the cloud host the firewall refuses
    the CLI user's other egress anyway."""
    if proxy is None:
        return ()
    return tuple((name, proxy) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))


def attach_session(profile: CliProfile, sandbox: Sandbox, transcript_limit_bytes: int) -> TerminalSession:
    """A terminal session, in its own sandbox, for a person to attach to. Raises SessionError for a
    profile without a terminal."""
    if profile.kind != "terminal":
        raise SessionError(f"attaching needs a terminal profile; {profile.name!r} is not one")
    return TerminalSession(
        profile, sandbox.tree, transcript_limit_bytes=transcript_limit_bytes, sandbox=sandbox
    )


def is_job_branch(store: JobStore, owner: str, repo: str, branch: str, *, pages: int = 20) -> bool:
    """True if a job of `owner/repo` (newest first, up to `pages` pages) works on `branch`."""
    cursor: str | None = None
    for _ in range(pages):
        page = store.list_jobs(repo=f"{owner}/{repo}", limit=100, cursor=cursor)
        if any(job.branch_name == branch and job.owner == owner for job in page.jobs):
            return True
        if page.next_cursor is None:
            return False
        cursor = page.next_cursor
    return False


def cli_user_for(settings: AgentSettings) -> CliUser | None:
    """AIPM_SANDBOX_CLI_USER resolved, or None (local mode). Raises ConfigError if the user is missing,
    root or the agent's own."""
    if settings.sandbox_cli_user is None:
        return None
    try:
        return CliUser.lookup(settings.sandbox_cli_user)
    except SandboxFault as err:
        raise ConfigError(f"AIPM_SANDBOX_CLI_USER: {err}") from err


class Agent:
    """The whole agent process: `start()`, then `shutdown()` (graceful) from a signal handler."""

    def __init__(self, settings: AgentSettings) -> None:
        """Build every part from `settings`. Raises ConfigError (the CLI user)."""
        self.settings = settings
        store = JobStore(settings.records_table, boto3.client("dynamodb"))
        secrets = boto3.client("secretsmanager")
        github_token = github_credentials(settings.github_api_url, settings.github_secret_id, client=secrets)
        agent_token = TokenSecret(settings.agent_token_secret_id, client=secrets)
        github = GitHubClient(settings.github_api_url, github_token)
        helper = install_credential_helper(settings.work_dir / ".bin")
        git = Git(
            base_url=settings.git_base_url,
            token_provider=github_token,
            credential_helper=helper,
            author_name=settings.git_author_name,
            author_email=settings.git_author_email,
            timeout_s=settings.git_timeout_s,
        )
        profile = profile_for(settings)
        policy = sandbox_policy(profile, settings)
        pristine = settings.work_dir / "homes" / profile.name
        cli_user = cli_user_for(settings)
        self._cli_user = cli_user
        runner = JobRunner(
            store,
            github,
            RunnerConfig(
                worker_prefix=settings.agent_id,
                lease_s=settings.lease_s,
                job_timeout_s=settings.job_timeout_s,
                saved_session_max_bytes=settings.saved_session_max_bytes,
            ),
        )
        slots = [
            self._slot(
                i,
                git,
                profile,
                Sandbox(settings.work_dir / "slots" / str(i), pristine, policy, cli_user=cli_user),
            )
            for i in range(1, settings.pool_size + 1)
        ]
        self.pool = AgentPool(
            PoolConfig(
                agent_id=settings.agent_id,
                lease_s=settings.lease_s,
                sweep_interval_s=settings.sweep_interval_s,
                reclaim_interval_s=settings.reclaim_interval_s,
                heartbeat_interval_s=settings.heartbeat_interval_s,
                restart_backoff_s=settings.session_restart_backoff_s,
                restart_backoff_max_s=settings.session_restart_backoff_max_s,
            ),
            store,
            runner,
            slots,
        )
        limits = ServerLimits(
            idle_timeout_s=settings.http_idle_timeout_s, max_connections=settings.http_max_connections
        )
        intake = JobIntake(
            store,
            github,
            IntakeConfig(default_repository=default_repository(settings), allowed_owners=owners(settings)),
        )
        self.pool_api = ApiServer(
            settings.bind_host, settings.pool_port, agent_token, pool_routes(self.pool), limits=limits
        )
        self.processor_api = ApiServer(
            settings.bind_host,
            settings.processor_port,
            agent_token,
            processor_routes(self.pool, intake),
            limits=limits,
        )
        self.attach = AttachServer(
            settings.bind_host,
            settings.attach_port,
            token_provider=agent_token,
            work_dir=settings.work_dir,
            workspace_factory=lambda tree: Workspace(
                settings.work_dir, tree, git, cli_user=cli_user, commit_exclude=profile.commit_exclude
            ),
            sandbox_factory=lambda root: Sandbox(root, pristine, policy, cli_user=cli_user),
            session_factory=lambda box: attach_session(profile, box, settings.transcript_limit_bytes),
            is_job_branch=lambda owner, repo, branch: is_job_branch(store, owner, repo, branch),
            allowed_owners=owners(settings),
            console_origin=settings.console_origin,
            max_sessions=settings.attach_max_sessions,
        )
        self._stopped = threading.Event()

    def _slot(self, slot_id: int, git: Git, profile: CliProfile, sandbox: Sandbox) -> SlotState:
        limit = self.settings.transcript_limit_bytes

        def make_session(tree: Path, on_output: Callable[[str], None]) -> AgentSession:
            return open_session(
                profile, tree, transcript_limit_bytes=limit, on_output=on_output, sandbox=sandbox
            )

        return SlotState(
            id=slot_id,
            workspace=Workspace(
                self.settings.work_dir,
                sandbox.tree,
                git,
                cli_user=self._cli_user,
                commit_exclude=profile.commit_exclude,
            ),
            sandbox=sandbox,
            session_factory=make_session,
        )

    def start(self) -> None:
        self.pool.endpoint = f"http://{self.settings.bind_host}:{self.processor_api.port}"
        self.pool.start()
        self.pool_api.start()
        self.processor_api.start()
        self.attach.start()
        self.pool.write_heartbeat()
        log.info(
            "agent started",
            extra={
                "agent_id": self.settings.agent_id,
                "slots": self.settings.pool_size,
                "profile": self.settings.cli_profile,
                "pool_port": self.pool_api.port,
                "processor_port": self.processor_api.port,
                "attach_port": self.attach.port,
            },
        )

    def shutdown(self) -> None:
        """Stop taking jobs, finish or hand back running ones within AIPM_DRAIN_TIMEOUT_S, stop serving."""
        if self._stopped.is_set():
            return
        log.info("shutting down", extra={"drain_timeout_s": self.settings.drain_timeout_s})
        self.attach.stop()
        self.pool.drain(self.settings.drain_timeout_s)
        self.pool_api.stop()
        self.processor_api.stop()
        self._stopped.set()
        log.info("agent stopped")

    def wait(self) -> None:
        self._stopped.wait()
