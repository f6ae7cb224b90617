"""Coding-agent sessions: one interface (:mod:`.base`), one module per protocol.

:func:`open_session` builds the session a profile's kind calls for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ec2_agent.profiles import CliProfile
from ec2_agent.sessions.acp import AcpSession
from ec2_agent.sessions.base import (
    AgentSession,
    CommandSandbox,
    OutcomeKind,
    ResumableSession,
    SessionError,
    SessionStartError,
    TaskOutcome,
    Unsandboxed,
)
from ec2_agent.sessions.headless import HeadlessSession
from ec2_agent.sessions.terminal import TerminalSession

__all__ = [
    "AcpSession",
    "AgentSession",
    "CommandSandbox",
    "HeadlessSession",
    "OutcomeKind",
    "ResumableSession",
    "SessionError",
    "SessionStartError",
    "TaskOutcome",
    "TerminalSession",
    "Unsandboxed",
    "open_session",
]


def open_session(
    profile: CliProfile,
    workdir: Path,
    *,
    transcript_limit_bytes: int = 64 * 1024,
    on_output: Callable[[str], None] | None = None,
    sandbox: CommandSandbox | None = None,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> AgentSession:
    """A not yet started session for ``profile`` running in ``workdir`` (inside ``sandbox`` if given)."""
    if profile.kind == "acp":
        return AcpSession(
            profile,
            workdir,
            transcript_limit_bytes=transcript_limit_bytes,
            on_output=on_output,
            sandbox=sandbox,
            log=log,
        )
    if profile.kind == "headless":
        return HeadlessSession(
            profile,
            workdir,
            transcript_limit_bytes=transcript_limit_bytes,
            on_output=on_output,
            sandbox=sandbox,
            log=log,
        )
    return TerminalSession(
        profile,
        workdir,
        transcript_limit_bytes=transcript_limit_bytes,
        on_output=on_output,
        sandbox=sandbox,
        log=log,
    )
