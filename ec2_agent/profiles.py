"""CLI profiles as data: how to start a coding-agent CLI and read its terminal.

A :class:`CliProfile` says which command to run, how to tell that the CLI is waiting for input
(``ready_pattern``), how it asks for tool approval and what to answer, how to reset and quit it, and
the time limits. :mod:`ec2_agent.sessions` drives a profile; nothing here
imports pexpect.

Built-in profiles (:func:`builtin_profile`):

``kiro-interactive``
    The prototype's way: a persistent ``kiro-cli chat`` session. Checked against public material
    (no Kiro binary was available here): Kiro's docs (slash commands: ``/clear`` clears the
    conversation, ``/quit`` with aliases ``/exit`` and ``/q`` exits; tool permissions: ``t`` trusts a
    tool for the session); transcripts in kirodotdev/Kiro issues (#7133: the question
    ``Allow this action? Use 't' to trust (always allow) the '<tool>' tool for the session. [y/n/t]:``
    followed by a prompt like ``35% >``; #5116: ``/clear`` asks a ``[y/n]:`` confirmation); and the
    Kiro provider of awslabs/cli-agent-orchestrator (classic prompt ``> `` optionally preceded by
    ``[agent]``, a context percentage, ``λ`` or ``!``; newer releases default to a full-screen TUI
    without the ``[y/n/t]`` question, and ``--legacy-ui`` selects the classic line interface, so the
    profile passes it). Not verified: that every release accepts ``--legacy-ui`` and prints exactly
    these strings. A reply may itself start with ``> ``, so the prompt only counts as the last thing
    printed, followed by ``settle_s`` (1 s) of quiet. If a release differs, describe it with
    :func:`generic_profile` — configuration, no code change.
``kiro-headless``
    ``kiro-cli chat --no-interactive --trust-all-tools <prompt>``, one process per job; exit status 0
    is success (Kiro documents 0 success, 1 failure, 3 MCP start-up failure). Kiro's headless mode
    authenticates with an API key in ``KIRO_API_KEY``, which the agent's environment must provide.
``kiro-acp`` (the default)
    ``kiro-cli acp``: Kiro over the Agent Client Protocol (:mod:`ec2_agent.sessions.acp`). From Kiro's docs
    (kiro.dev CLI: ACP) and the Q CLI source only — no Kiro binary runs here: protocol version 1, auth outside
    ACP (``kiro-cli login`` or ``KIRO_API_KEY``), no ``--trust-all-tools`` so every tool asks and the
    permission policy answers; it spawns a ``kiro-cli-chat`` child (the driver kills the tree).
``gemini-acp``
    ``gemini --acp`` (npm ``@google/gemini-cli``, pinned in ``aipm/local/clis.toml``); no self-relaunch
    (``GEMINI_CLI_NO_RELAUNCH``), workspace trusted, session mode ``default`` (asks before edits and shell).
    Needs ``GEMINI_API_KEY`` (and ``GOOGLE_GEMINI_BASE_URL`` for a stand-in) and, in its home,
    ``.gemini/settings.json`` selecting API-key auth with usage statistics off. It writes chat logs and a
    project registry under ``.gemini`` during every session: restored to pristine between jobs.
``qwen-acp``
    ``qwen --acp`` (npm ``@qwen-code/qwen-code``, Node 22): its default session mode ``auto`` approves by
    itself, so the profile sets ``default``. Needs ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``.
    It keeps chats, a usage record and a memory file (``.qwen/memories/MEMORY.md``, written by a sub-agent
    after each turn) under ``.qwen``: restored to pristine between jobs, so no job reads another's memory.
``codex-acp``
    Codex through ``codex-acp`` (npm ``@zed-industries/codex-acp``), its linux binary run directly (the node
    wrapper would orphan it). Needs ``OPENAI_API_KEY`` and, in its home, ``.codex/config.toml``: the model
    provider, ``approval_policy = "untrusted"`` (every command not known to be safe asks, so the permission
    policy decides) and ``sandbox_mode = "danger-full-access"`` (Codex's own bubblewrap sandbox cannot nest in
    the slot's, which contains it). Its session mode is left as the config makes it: the ``auto`` preset would
    turn Codex's own sandbox back on. It keeps sessions and history under ``.codex``: restored between jobs.
``emulator``
    ``python -m ec2_agent.kiro_emulator``: an emulator of the Kiro CLI's terminal protocol for local
    runs and tests (not Kiro; see that module).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ec2_agent.prompting import strip_control

__all__ = [
    "KIRO_APPROVAL_PATTERN",
    "KIRO_CONFIRM_PATTERN",
    "KIRO_PROMPT_PATTERN",
    "BuiltinProfileName",
    "CliProfile",
    "builtin_profile",
    "generic_profile",
]

BuiltinProfileName = Literal[
    "kiro-acp", "kiro-interactive", "kiro-headless", "emulator", "gemini-acp", "qwen-acp", "codex-acp"
]

# Kiro's classic prompt, e.g. "> ", "[dev] > ", "35% > ", "[dev] 8% λ !> ", as the last thing printed.
KIRO_PROMPT_PATTERN = r"(?m)^(?:\[[^\]\n]*\] *)?(?:\d+% *)?(?:λ *)?!?> *\Z"
KIRO_APPROVAL_PATTERN = r"Allow this action\?[^\n]*\[y/n/t\]:"
KIRO_CONFIRM_PATTERN = r"\[y/n\]:"
# The emulator prints "Model: ..." on the line before its prompt (the prototype's completion cue).
_EMULATOR_READY_PATTERN = r"(?m)^Model: [^\n]*\n(?:\[[^\]\n]*\] *)?(?:\d+% *)?!?> *\Z"


class ErrorPattern(BaseModel):
    """Output that means the turn failed although the CLI returned to its prompt (quota, auth, service)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(min_length=1, description="regex searched in the turn's output")
    reason: str = Field(min_length=1, description="what the job record says, e.g. 'model quota exceeded'")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern


class AcpSettings(BaseModel):
    """The ``acp`` section of a profile of kind ``acp`` (driven by :mod:`ec2_agent.sessions.acp`).

    ``mode``: the session mode set after each ``session/new`` (an agent whose default approves everything,
    e.g. Qwen Code's and Claude's "auto", must be set to one that asks); ``None`` keeps the agent's.
    ``permissions``: how permission requests are answered — ``workspace`` allows a tool call whose paths
    all lie in the job's workspace and refuses (and records) any other; ``allow`` / ``refuse`` answer all
    alike. ``allow_shell``: under ``workspace``, allow tool calls of kind ``execute`` (they run inside the
    sandbox; their paths, where given, are still checked).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str | None = Field(default=None, min_length=1)
    permissions: Literal["workspace", "allow", "refuse"] = "workspace"
    allow_shell: bool = True


class CliProfile(BaseModel):
    """How to run one coding-agent CLI. Validated on construction (regexes compile, argv non-empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    mode: Literal["interactive", "headless", "acp"]
    argv: tuple[str, ...] = Field(description="command; for headless the prompt is appended as last argument")
    env: Mapping[str, str] = Field(default_factory=dict, description="set in the CLI's environment")
    env_allow: tuple[str, ...] = Field(
        default=(), description="variables passed on from the agent's environment (beyond PATH, HOME, locale)"
    )
    ready_pattern: str = Field(
        default="", description="regex on the ANSI-stripped output: the CLI's input prompt is showing"
    )
    approval_pattern: str | None = Field(default=None, description="regex: a tool-approval question")
    approval_answer: str = "t"
    confirm_pattern: str | None = Field(
        default=None, description="regex: a yes/no confirmation asked after reset_command"
    )
    confirm_answer: str = "y"
    reset_command: str | None = "/clear"
    quit_command: str | None = "/quit"
    interrupt_sequence: str = Field(default="\x03", min_length=1, max_length=8)
    startup_timeout_s: float = Field(default=60, gt=0)
    reset_timeout_s: float = Field(default=30, gt=0)
    interrupt_timeout_s: float = Field(default=5, gt=0, description="wait for the prompt after Ctrl-C")
    quit_timeout_s: float = Field(default=5, gt=0, description="wait for exit after quit_command")
    kill_grace_s: float = Field(default=2, gt=0, description="wait after each signal to the process group")
    settle_s: float = Field(
        default=0.0, ge=0, description="quiet period after ready_pattern before completion (0 = none)"
    )
    error_patterns: tuple[ErrorPattern, ...] = Field(
        default=(), description="output that turns a finished turn into 'failed' with the reason"
    )
    exit_reasons: Mapping[int, str] = Field(
        default_factory=dict, description="headless: what a documented non-zero exit status means"
    )
    acp: AcpSettings | None = Field(default=None, description="kind 'acp' only: see AcpSettings")
    home_restore: tuple[str, ...] = Field(
        default=(),
        description="paths in the CLI's home it rewrites by itself (session logs, memory): put back to "
        "pristine between jobs while the session keeps running; any other change restarts it",
    )
    rows: int = Field(default=50, ge=10, le=1000)
    cols: int = Field(default=200, ge=40, le=1000)
    search_window_chars: int = Field(
        default=8192, ge=256, le=1 << 20, description="recent cleaned output the patterns are matched on"
    )

    @field_validator("argv")
    @classmethod
    def _argv_is_a_command(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv or not argv[0]:
            raise ValueError("argv must name a command")
        if any("\x00" in arg for arg in argv):
            raise ValueError("argv must not contain NUL characters")
        return argv

    @field_validator("env")
    @classmethod
    def _env_is_clean(cls, env: Mapping[str, str]) -> Mapping[str, str]:
        for key, value in env.items():
            if not key or "=" in key or "\x00" in key or "\x00" in value:
                raise ValueError(f"invalid environment entry {key!r}")
        return env

    @field_validator("ready_pattern", "approval_pattern", "confirm_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    @field_validator("approval_answer", "confirm_answer", "reset_command", "quit_command")
    @classmethod
    def _terminal_input_is_one_clean_line(cls, value: str | None) -> str | None:
        if value is not None and (not value or strip_control(value) != value):
            raise ValueError("must be non-empty text without control characters or line breaks")
        return value

    def error_in(self, text: str) -> str | None:
        """The reason of the first error pattern found in ``text``, with the matching line; else ``None``."""
        for error in self.error_patterns:
            found = re.search(error.pattern, text)
            if found is not None:
                start = text.rfind("\n", 0, found.start()) + 1
                end = text.find("\n", found.end())
                line = text[start : end if end >= 0 else len(text)].strip()
                return f"{error.reason}: {line[:300]}"
        return None

    @model_validator(mode="after")
    def _interactive_has_prompt(self) -> Self:
        if self.mode == "interactive" and not self.ready_pattern:
            raise ValueError("an interactive profile needs a ready_pattern")
        if (self.mode == "acp") != (self.acp is not None):
            raise ValueError("an 'acp' section goes with kind 'acp', and kind 'acp' needs one")
        return self


def builtin_profile(
    name: BuiltinProfileName, *, kiro_command: str = "kiro-cli", python: str = sys.executable
) -> CliProfile:
    """Return a built-in profile (see the module docstring). ``ValueError`` for an unknown name."""
    if name == "kiro-interactive":
        return CliProfile(
            name=name,
            mode="interactive",
            argv=(kiro_command, "chat", "--legacy-ui"),
            ready_pattern=KIRO_PROMPT_PATTERN,
            approval_pattern=KIRO_APPROVAL_PATTERN,
            confirm_pattern=KIRO_CONFIRM_PATTERN,
            settle_s=1.0,
        )
    if name == "kiro-headless":
        return CliProfile(
            name=name,
            mode="headless",
            argv=(kiro_command, "chat", "--no-interactive", "--trust-all-tools"),
            env_allow=("KIRO_API_KEY",),
            exit_reasons={
                1: "failure, authentication included",
                3: "MCP server start-up failed",
                4: "agent not found",
            },
            reset_command=None,
            quit_command=None,
        )
    if name == "kiro-acp":
        return CliProfile(
            name=name,
            mode="acp",
            argv=(kiro_command, "acp"),
            env_allow=("KIRO_API_KEY",),
            acp=AcpSettings(),
            reset_command=None,
            quit_command=None,
        )
    if name == "gemini-acp":
        return CliProfile(
            name=name,
            mode="acp",
            argv=("gemini", "--acp"),
            env={"GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"},
            env_allow=("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
            acp=AcpSettings(mode="default"),
            home_restore=(".gemini",),
            reset_command=None,
            quit_command=None,
        )
    if name == "qwen-acp":
        return CliProfile(
            name=name,
            mode="acp",
            argv=("qwen", "--acp"),
            env_allow=("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"),
            acp=AcpSettings(mode="default"),
            home_restore=(".qwen",),
            reset_command=None,
            quit_command=None,
        )
    if name == "codex-acp":
        return CliProfile(
            name=name,
            mode="acp",
            argv=("codex-acp-linux-x64",),
            env_allow=("OPENAI_API_KEY",),
            acp=AcpSettings(),
            home_restore=(".codex",),
            reset_command=None,
            quit_command=None,
        )
    if name == "emulator":
        return CliProfile(
            name=name,
            mode="interactive",
            argv=(python, "-m", "ec2_agent.kiro_emulator"),
            env_allow=("KIRO_EMULATOR_WORK_S", "PYTHONPATH"),
            ready_pattern=_EMULATOR_READY_PATTERN,
            approval_pattern=KIRO_APPROVAL_PATTERN,
            confirm_pattern=KIRO_CONFIRM_PATTERN,
            startup_timeout_s=20,
            reset_timeout_s=10,
        )
    raise ValueError(f"unknown built-in profile {name!r}")


def generic_profile(settings: Mapping[str, object]) -> CliProfile:
    """Build a profile from configuration alone, so another agent CLI plugs in without code.

    ``settings`` holds :class:`CliProfile` fields (``command`` is accepted for ``argv``). The command
    is a list of arguments, or text holding a JSON array of them; a shell string is refused. Unless
    given, ``name`` is ``"generic"``, ``mode`` ``"interactive"`` and there is no reset or quit command
    (sending ``/clear`` to an unknown CLI would be a guess). Raises ``ValueError`` (for invalid fields
    and unknown keys its subclass ``pydantic.ValidationError``).
    """
    data: dict[str, object] = {
        "name": "generic",
        "mode": "interactive",
        "reset_command": None,
        "quit_command": None,
    }
    data.update(settings)
    if "command" in data:
        if "argv" in data:
            raise ValueError("give either 'command' or 'argv', not both")
        data["argv"] = data.pop("command")
    argv = data.get("argv")
    if isinstance(argv, str):
        try:
            data["argv"] = json.loads(argv)
        except json.JSONDecodeError as exc:
            raise ValueError(
                "argv must be a list of arguments (a JSON array when given as text); "
                "shell strings are not accepted"
            ) from exc
    return CliProfile.model_validate(data)
