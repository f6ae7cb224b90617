"""CLI profiles as data: how to start a coding-agent CLI and how to read it.

A :class:`CliProfile` is validated data. The built-in profiles are TOML files in
``ec2_agent/builtin_profiles/`` (packaged with the wheel): adding a CLI is adding a file. A profile says
which command to run (``argv``; ``{python}`` and ``{kiro_command}`` are filled in by
:func:`builtin_profile`), its ``kind`` (``terminal``: a persistent CLI in a pseudo-terminal;
``headless``: one process per task; ``acp``: the Agent Client Protocol), what of the agent's environment
it may see (``env_allow``) and what it gets (``env``), files seeded into its home (``home_files``: the
answers to first-run dialogs, offline and telemetry settings), and for terminal profiles how to read its
rendered screen:

* ``ready_pattern``: a regex searched in the screen's text up to the cursor (rows joined with ``\\n``,
  trailing blanks removed except on the cursor's row, which ends at the cursor) — the CLI shows its input
  prompt. ``busy_pattern``: a regex searched in the whole screen — the CLI is working (a spinner, "esc to
  interrupt"); it vetoes readiness.
* ``questions``: tool approvals and confirmations, each a regex (same text as ``ready_pattern``, so it
  can be anchored at the cursor with ``\\Z``), the answer keys, whether Enter follows, and when it is
  asked (during a task or a reset).
* ``quiet_s``: how long the screen must stay unchanged before a state (ready, question) counts;
  ``raw_input``: the CLI reads its input in raw mode, so nothing is typed until the terminal has left
  canonical mode (a line typed earlier would arrive with CR turned into LF).
* ``bracketed_paste``: send the prompt as a bracketed paste when the CLI has enabled it (``ESC[?2004h``);
  ``input_rows``: how many rows above the cursor form the CLI's input area (where typed text must show
  before Enter is sent).
* ``error_patterns``: output that turns a finished turn into ``failed`` with a reason (quota, auth,
  service trouble); ``exit_reasons``: what a headless exit status means.
* ``acp`` (kind ``acp`` only): the session mode and the permission policy (:class:`AcpSettings`);
  ``home_restore``: paths in the CLI's home it rewrites by itself (session logs, memory), put back to
  pristine between jobs while the session keeps running; ``session_state``: those of them holding the
  CLI's saved sessions, kept per PR so a follow-up job resumes the PR's conversation — ACP's
  ``session/load``, or for a headless CLI its own flags: ``session_args`` start a new conversation under an
  id the agent chooses, ``resume_args`` continue one (``{session_id}`` stands for the id in both), and
  ``resume_refused`` recognises the CLI refusing a resume (the turn then runs again in a new conversation).
* ``commit_exclude``: globs of files the CLI writes for itself in the tree (history, caches) that are never
  committed (a tracked one keeps the branch's version). A CLI that wants a git repository makes its own
  ``/workspace/.git`` (a disposable one the agent never runs git on nor commits; see
  ``docs/sandbox-and-sessions.md``): no profile field is needed.

The facts each built-in profile encodes are cited in its file.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ec2_agent.prompting import strip_control

__all__ = [
    "AcpSettings",
    "BuiltinProfileName",
    "CliProfile",
    "ErrorPattern",
    "ProfileKind",
    "Question",
    "builtin_profile",
    "builtin_profile_names",
    "generic_profile",
    "seed_home",
]

ProfileKind = Literal["terminal", "headless", "acp"]
BuiltinProfileName = str  # one of builtin_profile_names(): the profiles are data files, not a closed list
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PROFILE_DIR = "builtin_profiles"
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")  # a `{name}` in session_args / resume_args


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return pattern


def _one_clean_line(value: str) -> str:
    if not value or strip_control(value) != value:
        raise ValueError("must be non-empty text without control characters or line breaks")
    return value


class ErrorPattern(BaseModel):
    """Output that means the turn failed although the CLI returned to its prompt (quota, auth, service)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(min_length=1, description="regex searched in the turn's output")
    reason: str = Field(min_length=1, description="what the job record says, e.g. 'model quota exceeded'")

    _check = field_validator("pattern")(_compiles)


class Question(BaseModel):
    """A question the CLI asks on its screen, and the keys that answer it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(min_length=1, description="regex on the screen text up to the cursor")
    answer: str = Field(description="keys typed as the answer (no control characters)")
    enter: bool = Field(default=True, description="send Enter after the answer, as its own write")
    during: Literal["task", "reset"] = "task"

    _check = field_validator("pattern")(_compiles)
    _clean = field_validator("answer")(_one_clean_line)


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
    """How to run one coding-agent CLI (see the module docstring). Validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: ProfileKind
    description: str = ""
    argv: tuple[str, ...] = Field(description="command; for headless the prompt is appended as last argument")
    env: Mapping[str, str] = Field(default_factory=dict, description="set in the CLI's environment")
    env_allow: tuple[str, ...] = Field(
        default=(), description="variables passed on from the agent's environment (beyond PATH, HOME, locale)"
    )
    home_files: Mapping[str, str] = Field(
        default_factory=dict, description="files seeded into the CLI's home: relative path -> content"
    )
    commit_exclude: tuple[str, ...] = Field(
        default=(),
        description="globs (git pathspec `glob` magic, from the top of the tree) of files the CLI writes for "
        "itself in the tree (history, caches): never committed; a tracked one keeps the branch's version",
    )
    home_restore: tuple[str, ...] = Field(
        default=(),
        description="paths in the CLI's home it rewrites by itself (session logs, memory): put back to "
        "pristine between jobs while the session keeps running; any other change restarts it",
    )
    session_state: tuple[str, ...] = Field(
        default=(),
        description="kind 'acp', or 'headless' with resume_args: paths in the CLI's home where it keeps its "
        "saved sessions, each inside a home_restore path; saved per PR after a job and put back before a "
        "follow-up resumes the PR's conversation (ACP session/load, or the CLI's resume_args)",
    )
    session_args: tuple[str, ...] = Field(
        default=(),
        description="kind 'headless' only: arguments (before the prompt) that start a new conversation the "
        "CLI saves under the id given as `{session_id}` (a fresh UUID per job); with resume_args",
    )
    resume_args: tuple[str, ...] = Field(
        default=(),
        description="kind 'headless' only: arguments (before the prompt) that continue the saved "
        "conversation `{session_id}`: a job's later turns and a follow-up job's first; with session_args",
    )
    resume_refused: str | None = Field(
        default=None,
        description="kind 'headless', with resume_args: a regex in the output of a failed turn that means "
        "the CLI refused the resume (no such conversation); the turn runs again in a new conversation",
    )
    session_state_rename: tuple[str, str] | None = Field(
        default=None,
        description="(pattern, replacement) applied to each saved-session file's path when it is put back: "
        "a CLI that names files after the clock may otherwise write over the session it loads",
    )
    acp: AcpSettings | None = Field(default=None, description="kind 'acp' only: see AcpSettings")

    # -- terminal ---------------------------------------------------------------------------------
    ready_pattern: str = ""
    busy_pattern: str | None = None
    questions: tuple[Question, ...] = ()
    reset_command: str | None = Field(default=None, description="clears the conversation, e.g. /clear")
    reset_done_pattern: str | None = Field(
        default=None, description="regex in the output that acknowledges the reset (else: the prompt returns)"
    )
    quit_command: str | None = Field(default=None, description="ends the CLI, e.g. /quit")
    interrupt_sequence: str = Field(default="\x03", min_length=1, max_length=8)
    bracketed_paste: bool = False
    raw_input: bool = Field(default=False, description="the CLI reads input in raw mode: wait for it")
    quiet_s: float = Field(default=0.3, ge=0, description="the screen must stay unchanged this long")
    input_rows: int = Field(default=4, ge=1, le=200, description="rows up to the cursor: the input area")
    rows: int = Field(default=50, ge=10, le=1000)
    cols: int = Field(default=200, ge=40, le=1000)

    # -- outcome ------------------------------------------------------------------------------------
    error_patterns: tuple[ErrorPattern, ...] = Field(
        default=(), description="output that turns a finished turn into 'failed' with the reason"
    )
    exit_reasons: Mapping[int, str] = Field(
        default_factory=dict, description="headless: what a documented non-zero exit status means"
    )

    # -- time limits (seconds) ------------------------------------------------------------------------
    startup_timeout_s: float = Field(default=60, gt=0)
    reset_timeout_s: float = Field(default=30, gt=0)
    interrupt_timeout_s: float = Field(default=5, gt=0, description="wait for the prompt after Ctrl-C")
    quit_timeout_s: float = Field(default=5, gt=0, description="wait for exit after quit_command")
    kill_grace_s: float = Field(default=2, gt=0, description="wait after each signal to the process group")
    input_timeout_s: float = Field(default=10, gt=0, description="wait for typed text to show on screen")

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
            if not _ENV_NAME.match(key) or "\x00" in value:
                raise ValueError(f"invalid environment entry {key!r}")
        return env

    @field_validator("env_allow")
    @classmethod
    def _allow_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            if name.upper().startswith(("AWS_", "AIPM_", "GITHUB_", "GH_")):
                raise ValueError(f"{name} is the agent's, never the CLI's")
        return names

    @field_validator("home_files")
    @classmethod
    def _home_paths(cls, files: Mapping[str, str]) -> Mapping[str, str]:
        for name in files:
            path = PurePosixPath(name)
            if not name or path.is_absolute() or ".." in path.parts or "\x00" in name:
                raise ValueError(f"home file {name!r} must be a relative path inside the home")
        return files

    @field_validator("commit_exclude")
    @classmethod
    def _exclude_globs(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            path = PurePosixPath(glob)
            if not glob or path.is_absolute() or ".." in path.parts or any(c in glob for c in "\x00\n"):
                raise ValueError(f"commit_exclude {glob!r} must be a glob relative to the top of the tree")
        return globs

    @field_validator("session_args", "resume_args")
    @classmethod
    def _names_the_session_once(cls, args: tuple[str, ...]) -> tuple[str, ...]:
        if not args:
            return args
        placeholders = [found for arg in args for found in _PLACEHOLDER.findall(arg)]
        if placeholders != ["{session_id}"]:
            raise ValueError(
                f"must hold the placeholder {{session_id}} exactly once and no other (found {placeholders})"
            )
        if any(not arg or "\x00" in arg for arg in args):
            raise ValueError("arguments must be non-empty and free of NUL characters")
        return args

    @field_validator("ready_pattern", "busy_pattern", "reset_done_pattern", "resume_refused")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        return _compiles(pattern) if pattern else pattern

    @field_validator("reset_command", "quit_command")
    @classmethod
    def _terminal_input_is_one_clean_line(cls, value: str | None) -> str | None:
        return _one_clean_line(value) if value is not None else None

    @model_validator(mode="after")
    def _terminal_has_prompt(self) -> Self:
        if self.kind == "terminal" and not self.ready_pattern:
            raise ValueError("a terminal profile needs a ready_pattern")
        if (self.kind == "acp") != (self.acp is not None):
            raise ValueError("an 'acp' section goes with kind 'acp', and kind 'acp' needs one")
        if (self.session_args or self.resume_args) and self.kind != "headless":
            raise ValueError("session_args and resume_args go with kind 'headless' (ACP has session/load)")
        if bool(self.session_args) != bool(self.resume_args):
            raise ValueError("session_args and resume_args go together: a resume needs an id the CLI saved")
        if self.resume_refused is not None and not self.resume_args:
            raise ValueError("resume_refused goes with resume_args")
        if self.session_state and self.kind != "acp" and not self.resume_args:
            raise ValueError(
                "session_state goes with kind 'acp' (resumed by session/load) or with a headless profile's "
                "resume_args"
            )
        for rel in self.session_state:
            path = PurePosixPath(rel)
            if not rel or path.is_absolute() or ".." in path.parts or "\x00" in rel:
                raise ValueError(f"session_state {rel!r} must be a relative path inside the home")
            if not any(path.is_relative_to(restored) for restored in self.home_restore):
                raise ValueError(f"session_state {rel!r} must lie inside a home_restore path")
        if self.session_state_rename is not None:
            pattern, replacement = self.session_state_rename
            try:
                re.compile(_compiles(pattern)).sub(replacement, "")  # parses the replacement's groups too
            except re.error as err:
                raise ValueError(f"session_state_rename replacement {replacement!r}: {err}") from err
        return self

    def questions_during(self, phase: Literal["task", "reset"]) -> tuple[Question, ...]:
        """The questions asked during a task or during a reset."""
        return tuple(q for q in self.questions if q.during == phase)

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


def builtin_profile_names() -> tuple[str, ...]:
    """The names of the built-in profiles (the TOML files in ``ec2_agent/builtin_profiles``), sorted."""
    folder = resources.files("ec2_agent").joinpath(_PROFILE_DIR)
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")))


def builtin_profile(name: str, *, kiro_command: str = "kiro-cli", python: str = sys.executable) -> CliProfile:
    """Load a built-in profile. ``{kiro_command}`` and ``{python}`` in its argv are replaced.

    Raises ``ValueError`` for an unknown name and ``pydantic.ValidationError`` (a ``ValueError``) if the
    file is not a valid profile.
    """
    if name not in builtin_profile_names():
        raise ValueError(f"unknown built-in profile {name!r}; known: {', '.join(builtin_profile_names())}")
    text = resources.files("ec2_agent").joinpath(_PROFILE_DIR, f"{name}.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    values = {"kiro_command": kiro_command, "python": python}
    data["argv"] = [_fill(arg, values) for arg in data.get("argv", [])]
    data.setdefault("name", name)
    if "exit_reasons" in data:
        data["exit_reasons"] = {int(code): reason for code, reason in data["exit_reasons"].items()}
    return CliProfile.model_validate(data)


def _fill(arg: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def generic_profile(settings: Mapping[str, object]) -> CliProfile:
    """Build a profile from configuration alone, so another agent CLI plugs in without code.

    ``settings`` holds :class:`CliProfile` fields (``command`` is accepted for ``argv``). The command
    is a list of arguments, or text holding a JSON array of them; a shell string is refused. Unless
    given, ``name`` is ``"generic"`` and ``kind`` ``"terminal"``; there is no reset or quit command unless
    given (sending ``/clear`` to an unknown CLI would be a guess). Raises ``ValueError`` (for invalid fields
    and unknown keys its subclass ``pydantic.ValidationError``).
    """
    data: dict[str, object] = {
        "name": "generic",
        "kind": "terminal",
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


def seed_home(profile: CliProfile, home: Path, *, workspace: str) -> None:
    """Write the profile's ``home_files`` under ``home`` (directories 0700, files 0600).

    ``{home}`` and ``{workspace}`` in a file's content become ``home`` and ``workspace`` (the CLI's
    working directory as the CLI sees it: ``/workspace`` inside the sandbox). A file that exists already
    and holds a JSON object, like the profile's content, is merged with it (its own keys win), so settings
    seeded elsewhere (an API key's approval) are kept. Raises ``OSError``.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, content in profile.home_files.items():
        path = home / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = _fill(content, {"home": str(home), "workspace": workspace})
        if path.is_file():
            text = _merged_json(path.read_text(encoding="utf-8"), text) or text
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)


def _merged_json(existing: str, seeded: str) -> str | None:
    """``seeded`` merged into ``existing`` when both are JSON objects (``existing`` wins), else ``None``."""
    try:
        old, new = json.loads(existing), json.loads(seeded)
    except json.JSONDecodeError:
        return None
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None

    def merge(base: dict[str, object], extra: dict[str, object]) -> dict[str, object]:
        result = dict(extra)
        for key, value in base.items():
            other = result.get(key)
            both = isinstance(value, dict) and isinstance(other, dict)
            result[key] = merge(value, other) if both else value  # type: ignore[arg-type]
        return result

    return json.dumps(merge(old, new), indent=2) + "\n"
