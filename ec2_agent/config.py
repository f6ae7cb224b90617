"""The agent's configuration: one validated model, read once at start from `AIPM_*` environment variables."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ec2_agent.profiles import builtin_profile_names


class ConfigError(RuntimeError):
    """The agent cannot start with this configuration; the message names the settings at fault."""


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIPM_", frozen=True, extra="ignore")

    agent_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=100)
    records_table: str = Field(min_length=3)
    github_secret_id: str = Field(min_length=1)
    github_api_url: str = "https://api.github.com"
    git_base_url: str = "https://github.com"
    agent_token_secret_id: str = Field(min_length=1)

    bind_host: str = "127.0.0.1"
    pool_port: int = Field(default=8081, ge=0, le=65535)
    processor_port: int = Field(default=8082, ge=0, le=65535)
    attach_port: int = Field(default=8083, ge=0, le=65535)
    attach_max_sessions: int = Field(default=2, ge=1, le=16)

    pool_size: int = Field(default=2, ge=1, le=16)
    cli_profile: str = "kiro-acp"  # a built-in profile (ec2_agent/builtin_profiles) or "generic"
    kiro_command: str = "kiro-cli"
    generic_profile: dict[str, Any] | None = None
    transcript_limit_bytes: int = Field(default=64 * 1024, ge=4096)
    # A PR's saved CLI session (gzip), kept in its own records item: DynamoDB items are at most 400 KB.
    saved_session_max_bytes: int = Field(default=300_000, ge=0, le=350_000)

    work_dir: Path = Path("/var/lib/aipm/work")
    job_timeout_s: float = Field(default=1800, gt=0)
    lease_s: float = Field(default=60, ge=1)
    sweep_interval_s: float = Field(default=15, gt=0)
    reclaim_interval_s: float = Field(default=30, gt=0)
    heartbeat_interval_s: float = Field(default=15, gt=0)
    drain_timeout_s: float = Field(default=60, ge=0)
    session_restart_backoff_s: float = Field(default=1.0, gt=0)
    session_restart_backoff_max_s: float = Field(default=60.0, gt=0)
    git_timeout_s: float = Field(default=120, gt=0)
    cli_home_seed: Path | None = None
    allowed_owners: str = Field(default="", description="comma-separated owners attach may work on")
    console_origin: str | None = Field(default=None, description="the only browser Origin attach accepts")
    sandbox_network: Literal["host", "none"] | None = None
    sandbox_ro_binds: tuple[Path, ...] = ()
    sandbox_cli_user: str | None = Field(
        default=None,
        min_length=1,
        description="the CLI's own unprivileged user (the cloud's aipm-cli); unset: the agent's own (local)",
    )
    cli_proxy: str | None = Field(
        default=None,
        pattern=r"^http://[A-Za-z0-9.\[\]:-]+$",
        description="the egress proxy the CLI must use (HTTPS_PROXY inside the sandbox; the cloud host's)",
    )
    sandbox_processes_max: int = Field(default=1024, ge=16, description="tasks per sandbox (RLIMIT_NPROC)")
    sandbox_file_size_mib: int = Field(default=1024, ge=1, description="largest file (RLIMIT_FSIZE)")
    sandbox_process_memory_mib: int = Field(default=4096, ge=64, description="per process (RLIMIT_DATA)")
    sandbox_tmp_size_mib: int = Field(default=1024, ge=1, description="the sandbox's /tmp tmpfs")
    sandbox_cpu_nice: int = Field(default=10, ge=0, le=19, description="niceness of the sandbox's processes")
    default_repository: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$",
        description="owner/repo the prototype's /api/process-pr and /generate-code mean when they name none",
    )
    http_idle_timeout_s: float = Field(default=30.0, gt=0, description="agent HTTP servers: idle timeout")
    http_max_connections: int = Field(default=32, ge=1, le=1024, description="agent HTTP servers: at once")
    git_author_name: str = "AIPM Agent"
    git_author_email: str = "aipm-agent@users.noreply.github.com"

    @field_validator("cli_profile")
    @classmethod
    def _known_profile(cls, name: str) -> str:
        if name != "generic" and name not in builtin_profile_names():
            known = ", ".join(builtin_profile_names())
            raise ValueError(f"unknown CLI profile {name!r}; known: generic, {known}")
        return name

    @model_validator(mode="after")
    def _generic_needs_profile(self) -> AgentSettings:
        if self.cli_profile == "generic" and not self.generic_profile:
            raise ValueError("AIPM_GENERIC_PROFILE (JSON) is required when AIPM_CLI_PROFILE=generic")
        return self


def default_repository(settings: AgentSettings) -> tuple[str, str] | None:
    """AIPM_DEFAULT_REPOSITORY as (owner, repo), or None."""
    if not settings.default_repository:
        return None
    owner, _, repo = settings.default_repository.partition("/")
    return owner, repo


def owners(settings: AgentSettings) -> frozenset[str]:
    """AIPM_ALLOWED_OWNERS as a set of lower-case owner names."""
    return frozenset(o.strip().lower() for o in settings.allowed_owners.split(",") if o.strip())


def load_settings() -> AgentSettings:
    """Read and validate the environment. Raises ConfigError naming every invalid or missing setting."""
    try:
        return AgentSettings()
    except ValidationError as err:
        names = ", ".join("AIPM_" + str(e["loc"][0]).upper() if e["loc"] else e["msg"] for e in err.errors())
        raise ConfigError(f"invalid agent configuration: {names}") from err
