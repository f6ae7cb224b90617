"""The session interface: one protocol for every way of driving a coding-agent CLI, with typed outcomes.

Implemented by one module per protocol (see ``docs/sandbox-and-sessions.md``):
:mod:`ec2_agent.sessions.terminal` (a persistent CLI in a pseudo-terminal, judged on a rendered screen),
:mod:`ec2_agent.sessions.headless` (one process per task on pipes) and, beside them, the ACP driver.
A session never spawns its command directly: it asks its :class:`CommandSandbox` for the wrapped
command and environment, so every driver runs inside the slot's sandbox.

A session belongs to one thread; only the ``cancel`` event of :meth:`AgentSession.run_task` may be set
from another.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ec2_agent.profiles import CliProfile
from ec2_agent.secret_screen import is_credential_name

__all__ = [
    "AgentSession",
    "CommandSandbox",
    "OutcomeKind",
    "SessionError",
    "SessionStartError",
    "TaskOutcome",
    "Unsandboxed",
    "child_environment",
]

OutcomeKind = Literal["completed", "failed", "timed_out", "cancelled", "crashed"]


@dataclass(frozen=True)
class TaskOutcome:
    """How one task ended.

    ``kind``: ``completed`` (the CLI finished its turn), ``failed`` (it finished but reported an error:
    a profile's error pattern such as quota or auth, or a headless non-zero exit; ``reason`` says which),
    ``timed_out``, ``cancelled``, ``crashed`` (the CLI process ended on its own mid-task).
    ``output_tail`` is the end of the task's transcript (at most the session's ``transcript_limit_bytes``
    of UTF-8); ``exit_status`` is the process's exit status when it ended (negative signal number if
    killed by a signal), else ``None``; ``duration_s`` in seconds; ``approvals`` counts the tool-approval
    questions answered; ``reason`` is a one-line explanation for any kind but ``completed`` (may be empty).
    """

    kind: OutcomeKind
    output_tail: str
    exit_status: int | None
    duration_s: float
    approvals: int = 0
    reason: str = ""


class SessionError(Exception):
    """The session cannot do what was asked (not running, reset not proven, ...)."""

    def __init__(self, message: str, output_tail: str = "") -> None:
        super().__init__(message)
        self.output_tail = output_tail


class SessionStartError(SessionError):
    """The CLI could not be started or did not become ready in time; the message says why."""


class CommandSandbox(Protocol):
    """The seam to the slot's sandbox (``ec2_agent.sandbox``): wraps a command before it is spawned."""

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], *, new_session: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        """Return the argument list and environment that run ``argv`` with ``env`` inside the sandbox.
        ``new_session=False`` only for a driver that gives the CLI a pseudo-terminal of its own."""
        ...


class Unsandboxed:
    """The identity seam: runs the command as given (tests of the drivers themselves, and local runs
    without a sandbox)."""

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], *, new_session: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        return list(argv), dict(env)


@runtime_checkable
class AgentSession(Protocol):
    """One coding-agent CLI driven according to its profile (see the design note for the contract)."""

    @property
    def profile(self) -> CliProfile: ...

    @property
    def alive(self) -> bool:
        """The session can take a task now (persistent kinds: the CLI process is running)."""
        ...

    @property
    def pid(self) -> int | None:
        """The main process (inside a sandbox: the sandbox's child), or ``None`` when none runs."""
        ...

    def start(self) -> None:
        """Start the CLI and wait until it is ready. Raises :class:`SessionStartError` with the reason."""
        ...

    def run_task(
        self,
        prompt: str,
        *,
        timeout_s: float,
        cancel: threading.Event | None = None,
        on_prompt_sent: Callable[[], None] | None = None,
    ) -> TaskOutcome:
        """Run one task to its end; never raises for what the CLI does (that is the outcome).
        Raises :class:`SessionError` if the session cannot take a task."""
        ...

    def reset(self) -> None:
        """Forget the conversation. Raises :class:`SessionError` if the reset is not proven."""
        ...

    def close(self) -> None:
        """End the CLI and everything it started. Idempotent; never raises."""
        ...


@runtime_checkable
class ResumableSession(AgentSession, Protocol):
    """A session whose CLI can continue a saved conversation (ACP ``session/load``; a headless CLI's resume
    flag, the profile's ``resume_args``): a PR's follow-up job resumes the PR's earlier session instead of
    starting with only a brief."""

    @property
    def session_id(self) -> str | None:
        """The current conversation's id (saved with the CLI's session files after a job)."""
        ...

    @property
    def can_resume(self) -> bool:
        """The CLI can load saved sessions (ACP: the running agent said so; headless: its profile says how)
        and its profile names where it keeps them."""
        ...

    def resume(self, session_id: str) -> None:
        """Continue the saved conversation ``session_id`` (its files back in the CLI's home first).
        Raises :class:`SessionError` if it cannot; the session then goes on with a new conversation."""
        ...


# What a CLI's environment is built from when its profile does not widen it: enough to find programs,
# a home, a locale and a terminal type. Never AWS_*, tokens or AIPM_* (see the design note).
BASE_ENV_ALLOW: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "TZ")


def child_environment(profile: CliProfile, *, term: str | None = "xterm-256color") -> dict[str, str]:
    """The environment a CLI starts with: the allowed variables of the agent's own environment
    (:data:`BASE_ENV_ALLOW` plus the profile's ``env_allow``), ``TERM``, then the profile's ``env``."""
    allowed = (*BASE_ENV_ALLOW, *profile.env_allow)
    env = {name: os.environ[name] for name in allowed if name in os.environ}
    if term is not None:
        env["TERM"] = term
    env.update(profile.env)
    return env


def given_credentials(profile: CliProfile) -> tuple[str, ...]:
    """The values of the credentials :func:`child_environment` gives the CLI: its variables beyond
    :data:`BASE_ENV_ALLOW` whose name says key, token, secret or password (``ANTHROPIC_API_KEY``,
    ``GEMINI_API_KEY``), for the secret screen to redact by value. Never log them."""
    env = child_environment(profile, term=None)
    return tuple(v for k, v in env.items() if k not in BASE_ENV_ALLOW and is_credential_name(k))


class Tail:
    """The last ``limit`` bytes (UTF-8) of a transcript, kept as a deque of chunks."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("transcript_limit_bytes must be positive")
        self._limit = limit
        self._chunks: deque[tuple[str, int]] = deque()
        self._size = 0

    @property
    def limit(self) -> int:
        """The most bytes kept."""
        return self._limit

    def append(self, text: str) -> None:
        size = len(text.encode("utf-8", "replace"))
        self._chunks.append((text, size))
        self._size += size
        while len(self._chunks) > 1 and self._size - self._chunks[0][1] >= self._limit:
            self._size -= self._chunks.popleft()[1]

    def text(self) -> str:
        data = "".join(chunk for chunk, _ in self._chunks).encode("utf-8", "replace")
        return data[-self._limit :].decode("utf-8", "ignore")

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
