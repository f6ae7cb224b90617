"""The stand-in's deterministic play: what a model would say next in a coding conversation.

Stateless: the next step is decided from the request alone (the conversation the CLI sends), so two
CLIs, two sessions or two jobs never share anything through the stand-in.

* turn 1 — no tool call of ours in the conversation yet: call the CLI's read tool on ``TASK.md``
  (its shell tool with ``cat TASK.md`` when it offers no read tool);
* turn 2 — the read's result is in the conversation: parse the task from it and write the change
  with the CLI's write tool (its shell tool with a quoted here-document otherwise);
* turn 3 — the write's result is in: a final message naming the file.

A CLI that offers no tools (aider, or a CLI's side request such as a title) gets a plain reply; when
the conversation holds TASK.md's text, that reply is the whole new file in aider's "whole" edit format.

The change is ``docs/<slug of the title>.md`` listing the title, objective and acceptance criteria
(:func:`render_change`); the same TASK.md always gives byte-identical content. A follow-up brief that names a
review comment's file (``File: `` + the path in a code span, ec2_agent.followup) is answered as a model
answers a review: the named file is read after TASK.md (turn 2), then written back with one line appended
(turn 3, :func:`render_follow_up`), then the final message — the change touches the file the reviewer
commented on.

Directives for fault tests, in TASK.md (e.g. in the objective), as an HTML comment
``<!-- model: slow=3, error=500, quota, hang, no-change -->``: they apply from the turn that has read
TASK.md (turn 2) on — ``slow=S`` waits S seconds before answering, ``error=N`` answers HTTP N, ``quota``
answers the API's quota-exceeded error, ``hang`` never answers, ``no-change`` skips the write.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from ec2_agent.kiro_emulator import parse_task, slug

__all__ = [
    "Action",
    "Conversation",
    "ModelDirectives",
    "ToolCall",
    "ToolSpec",
    "next_action",
    "parse_directives",
    "render_change",
    "render_follow_up",
]

TASK_FILE = "TASK.md"
_DIRECTIVE = re.compile(r"<!--\s*model:\s*(.*?)-->", re.IGNORECASE | re.DOTALL)
# Tool result lines numbered by the CLI ("     1→text", "  12\ttext", "1| text").
_NUMBERED_LINE = re.compile(r"^\s*\d+(?:→|\t|\| ?)", re.MULTILINE)
# Where CLIs state their working directory in the system prompt or first user message.
_CWD_PATTERNS = (
    re.compile(r"<cwd>([^<\n]+)</cwd>"),  # Codex environment_context
    re.compile(r"Working directory: (/[^\s'\"`]+)"),  # Claude Code <env>
    re.compile(r"working in the directory:? *`?(/[^\s'\"`]+)"),  # Gemini CLI, Qwen Code
    re.compile(r"current working directory(?: is)?:? *`?(/[^\s'\"`]+)", re.IGNORECASE),
)
_READ_TOOLS = ("read_file", "read", "readfile", "view", "read_text_file", "fs_read")
_WRITE_TOOLS = ("write_file", "write", "writefile", "create_file", "write_text_file", "fs_write")
_SHELL_TOOLS = (
    "bash",
    "run_shell_command",
    "shell",
    "shell_command",
    "exec_command",
    "local_shell",
    "terminal",
)
_PATH_KEYS = ("file_path", "absolute_path", "path", "filePath", "filename", "target_file")
_CONTENT_KEYS = ("content", "contents", "file_text", "text")


@dataclass(frozen=True)
class ToolSpec:
    """A tool the CLI offers: its name and JSON-schema ``parameters`` (may be empty)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def properties(self) -> dict[str, Any]:
        props = self.parameters.get("properties") if isinstance(self.parameters, dict) else None
        return props if isinstance(props, dict) else {}


@dataclass(frozen=True)
class ToolCall:
    """A tool call, ours (in the history) or to be made: name and arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """What one request says, whatever the API shape.

    ``system`` is the system prompt text; ``texts`` every user/assistant text in order; ``calls`` the
    assistant's earlier tool calls; ``results`` the tool results' text in order; ``tools`` what is
    offered now. ``json_schema`` is set for a structured-output request (Gemini's routing call).
    """

    system: str
    texts: tuple[str, ...]
    calls: tuple[ToolCall, ...]
    results: tuple[str, ...]
    tools: tuple[ToolSpec, ...]
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelDirectives:
    """Fault switches read from TASK.md (see the module docstring)."""

    slow_s: float = 0.0
    error_status: int | None = None
    quota: bool = False
    hang: bool = False
    no_change: bool = False


@dataclass(frozen=True)
class Action:
    """The reply to give: a tool call, a text, or a JSON object (structured output).

    ``stage`` names the step for the request log: ``read``, ``write``, ``final``, ``whole-file``,
    ``side`` (no tools, no task) or ``json``.
    """

    kind: Literal["tool", "text", "json"]
    stage: str
    text: str = ""
    call: ToolCall | None = None
    json_value: dict[str, Any] | None = None
    directives: ModelDirectives = field(default_factory=ModelDirectives)


def parse_directives(task_text: str) -> ModelDirectives:
    """Read ``<!-- model: ... -->`` switches. ``ValueError`` for a malformed value."""
    values: dict[str, str] = {}
    for block in _DIRECTIVE.findall(task_text):
        for token in re.split(r"[,\s]+", block):
            name, _, value = token.partition("=")
            if name:
                values[name.lower()] = value
    slow = values.get("slow")
    error = values.get("error")
    status = int(error or 500) if error is not None else None
    if status is not None and not 400 <= status <= 599:
        raise ValueError(f"error={status}: an HTTP error status is 400-599")
    return ModelDirectives(
        slow_s=float(slow) if slow else 0.0,
        error_status=status,
        quota="quota" in values,
        hang="hang" in values,
        no_change="no-change" in values,
    )


def render_change(task_text: str) -> tuple[str, str]:
    """The relative path and content the stand-in writes for a TASK.md text (deterministic)."""
    spec = parse_task(_DIRECTIVE.sub("", task_text))
    criteria = [f"- [x] {c}" for c in spec.criteria] or ["- (none given)"]
    content = "\n".join(
        [
            f"# {spec.title}",
            "",
            "Written by a real coding-agent CLI driven by the AIPM model stand-in (aipm.local.model_standin)",
            "",
            "## Objective",
            "",
            spec.objective or "(none given)",
            "",
            "## Acceptance criteria",
            "",
            *criteria,
            "",
        ]
    )
    return f"docs/{slug(spec.title)}.md", content


def render_follow_up(task_text: str, current: str) -> tuple[str, str] | None:
    """For a follow-up brief naming a review comment's file: that path and its `current` text with one
    line appended (deterministic); None when the brief names no file (or an unsafe path)."""
    spec = parse_task(_DIRECTIVE.sub("", task_text))
    if spec.file is None or _unsafe_path(spec.file):
        return None
    where = f" (line {spec.line})" if spec.line else ""
    body = current if not current or current.endswith("\n") else current + "\n"
    return (
        spec.file,
        f"{body}\nFollow-up{where}: written by a real coding-agent CLI driven by the AIPM model stand-in.\n",
    )


def _unsafe_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return pure.is_absolute() or ".." in pure.parts or not pure.parts


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def _find_tool(tools: tuple[ToolSpec, ...], names: tuple[str, ...]) -> ToolSpec | None:
    by_name = {_norm(t.name): t for t in tools}
    return next((by_name[n] for n in names if n in by_name), None)


def _key(tool: ToolSpec, candidates: tuple[str, ...], default: str) -> str:
    return next((k for k in candidates if k in tool.properties), default)


def _cwd(conv: Conversation) -> str | None:
    for text in (conv.system, *conv.texts):
        for pattern in _CWD_PATTERNS:
            match = pattern.search(text)
            if match:
                return match.group(1).rstrip(".,;:)")
    return None


def _task_text(conv: Conversation) -> str | None:
    """TASK.md's text as the CLI showed it (a tool result, or a file the CLI put in the prompt)."""
    for text in (*conv.results, *conv.texts):
        cleaned = _unwrap(text)
        start = cleaned.find("\n# ") + 1 if not cleaned.startswith("# ") else 0
        if (start > 0 or cleaned.startswith("# ")) and "## Objective" in cleaned[start:]:
            return cleaned[start:]
    return None


def _unwrap(text: str) -> str:
    """A tool result's text: JSON ``{"output": ...}`` unwrapped, line numbers removed."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            for key in ("output", "content", "stdout", "llmContent", "text"):
                if isinstance(value.get(key), str):
                    text = value[key]
                    break
    return _NUMBERED_LINE.sub("", text.replace("\r\n", "\n"))


def _path_arg(tool: ToolSpec, relative: str, cwd: str | None) -> dict[str, Any]:
    key = _key(tool, _PATH_KEYS, "file_path")
    wants_absolute = key == "absolute_path" or "absolute" in json.dumps(tool.properties.get(key, {})).lower()
    value = str(PurePosixPath(cwd) / relative) if cwd and (wants_absolute or key == "file_path") else relative
    return {key: value}


def _shell_call(tool: ToolSpec, script: str, cwd: str | None) -> ToolCall:
    key = _key(tool, ("command", "cmd", "commands"), "command")
    schema = tool.properties.get(key, {})
    command: Any = ["bash", "-lc", script] if schema.get("type") == "array" else script
    arguments: dict[str, Any] = {key: command}
    if cwd and "workdir" in tool.properties:
        arguments["workdir"] = cwd
    return ToolCall(tool.name, arguments)


def _follow_up_step(
    conv: Conversation,
    task: str,
    reviewed: str,
    reader: ToolSpec | None,
    writer: ToolSpec | None,
    shell: ToolSpec | None,
    cwd: str | None,
    directives: ModelDirectives,
) -> Action:
    """A follow-up on a reviewed file: read it (after TASK.md), write it back with a line appended, end."""
    if len(conv.calls) < 2:  # TASK.md was read; the reviewed file not yet
        if reader is not None:
            return Action("tool", "read", call=ToolCall(reader.name, _path_arg(reader, reviewed, cwd)))
        if shell is not None:
            return Action("tool", "read", call=_shell_call(shell, f"cat {shlex.quote(reviewed)}", cwd))
        return Action("text", "final", text="I have no tool to read the reviewed file with.")
    if len(conv.calls) >= 3 or len(conv.results) < 2:
        return Action(
            "text", "final", text=f"I updated {reviewed} as the review asks.", directives=directives
        )
    change = render_follow_up(task, _unwrap(conv.results[1]))
    assert change is not None
    path, content = change
    if writer is not None:
        arguments = _path_arg(writer, path, cwd)
        arguments[_key(writer, _CONTENT_KEYS, "content")] = content
        return Action("tool", "write", call=ToolCall(writer.name, arguments), directives=directives)
    if shell is not None:
        script = f"cat > {shlex.quote(path)} <<'AIPM_STANDIN_EOF'\n{content}AIPM_STANDIN_EOF"
        return Action("tool", "write", call=_shell_call(shell, script, cwd), directives=directives)
    return Action("text", "final", text="I have no tool to write files with.", directives=directives)


def _json_for(schema: dict[str, Any]) -> Any:
    """A value satisfying a (Gemini/OpenAPI-style) schema: first enum value, numbers ≥ 1."""
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _json_for(sub) for name, sub in props.items() if isinstance(sub, dict)}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return "The AIPM model stand-in answers deterministically."


def next_action(conv: Conversation) -> Action:
    """Decide the reply to ``conv`` (see the module docstring). ``ValueError`` for a bad directive."""
    if conv.json_schema is not None:
        return Action("json", "json", json_value=_json_for(conv.json_schema))
    task = _task_text(conv)
    directives = parse_directives(task) if task is not None else ModelDirectives()
    if not conv.tools:
        if task is None:
            return Action("text", "side", text="AIPM model stand-in.")
        path, content = render_change(task)
        fence = "````" if "```" in content else "```"
        return Action(
            "text", "whole-file", text=f"{path}\n{fence}\n{content}{fence}\n", directives=directives
        )
    cwd = _cwd(conv)
    reader = _find_tool(conv.tools, _READ_TOOLS)
    writer = _find_tool(conv.tools, _WRITE_TOOLS)
    shell = _find_tool(conv.tools, _SHELL_TOOLS)
    if not conv.calls:
        if reader is not None:
            return Action("tool", "read", call=ToolCall(reader.name, _path_arg(reader, TASK_FILE, cwd)))
        if shell is not None:
            return Action("tool", "read", call=_shell_call(shell, f"cat {TASK_FILE}", cwd))
        return Action("text", "final", text="I have no tool to read TASK.md with.")
    if task is None:
        return Action("text", "final", text="I could not read TASK.md, so I changed nothing.")
    reviewed = parse_task(_DIRECTIVE.sub("", task)).file
    if reviewed is not None and not _unsafe_path(reviewed) and not directives.no_change:
        return _follow_up_step(conv, task, reviewed, reader, writer, shell, cwd, directives)
    path, content = render_change(task)
    wrote = any(path in json.dumps(call.arguments) for call in conv.calls)
    if wrote or directives.no_change:
        done = "Nothing needed changing." if directives.no_change else f"I wrote {path} as TASK.md asks."
        return Action("text", "final", text=done, directives=directives)
    if writer is not None:
        arguments = _path_arg(writer, path, cwd)
        arguments[_key(writer, _CONTENT_KEYS, "content")] = content
        return Action("tool", "write", call=ToolCall(writer.name, arguments), directives=directives)
    if shell is not None:
        folder = str(PurePosixPath(path).parent)
        script = f"mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(path)} <<'AIPM_STANDIN_EOF'\n"
        script += f"{content}AIPM_STANDIN_EOF"
        return Action("tool", "write", call=_shell_call(shell, script, cwd), directives=directives)
    return Action("text", "final", text="I have no tool to write files with.", directives=directives)
