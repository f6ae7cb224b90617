"""Composition root of the agent: builds the pool, runner, HTTP servers from validated settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import boto3

from ec2_agent.attach import AttachServer
from ec2_agent.config import AgentSettings
from ec2_agent.http_api import ApiServer, pool_routes, processor_routes
from ec2_agent.pool import AgentPool, PoolConfig
from ec2_agent.profiles import CliProfile, builtin_profile, generic_profile
from ec2_agent.runner import JobRunner, RunnerConfig, SlotState
from ec2_agent.secrets import TokenSecret
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


def attach_session(profile: CliProfile, tree: Path, transcript_limit_bytes: int) -> TerminalSession:
    """A terminal session for a person to attach to. Raises SessionError for a profile without a terminal."""
    if profile.mode != "interactive":
        raise SessionError(f"attaching needs an interactive terminal profile; {profile.name!r} is not one")
    return TerminalSession(profile, tree, transcript_limit_bytes=transcript_limit_bytes)


class Agent:
    """The whole agent process: `start()`, then `shutdown()` (graceful) from a signal handler."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        store = JobStore(settings.records_table, boto3.client("dynamodb"))
        secrets = boto3.client("secretsmanager")
        github_token = TokenSecret(settings.github_secret_id, client=secrets)
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
        runner = JobRunner(
            store,
            github,
            RunnerConfig(
                worker_prefix=settings.agent_id,
                lease_s=settings.lease_s,
                job_timeout_s=settings.job_timeout_s,
            ),
        )
        slots = [self._slot(i, settings.work_dir, git, profile) for i in range(1, settings.pool_size + 1)]
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
        self.pool_api = ApiServer(settings.bind_host, settings.pool_port, agent_token, pool_routes(self.pool))
        self.processor_api = ApiServer(
            settings.bind_host, settings.processor_port, agent_token, processor_routes(self.pool)
        )
        self.attach = AttachServer(
            settings.bind_host,
            settings.attach_port,
            token_provider=agent_token,
            work_dir=settings.work_dir / "attach",
            workspace_factory=lambda root: Workspace(root, git),
            session_factory=lambda tree: attach_session(profile, tree, settings.transcript_limit_bytes),
            max_sessions=settings.attach_max_sessions,
        )
        self._stopped = threading.Event()

    def _slot(self, slot_id: int, work_dir: Path, git: Git, profile: CliProfile) -> SlotState:
        limit = self.settings.transcript_limit_bytes

        def make_session(tree: Path, on_output: Callable[[str], None]) -> AgentSession:
            return open_session(profile, tree, transcript_limit_bytes=limit, on_output=on_output)

        return SlotState(
            id=slot_id, workspace=Workspace(work_dir / f"slot-{slot_id}", git), session_factory=make_session
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
