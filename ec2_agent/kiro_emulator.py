"""Kiro CLI emulator: imitates the Kiro CLI's terminal protocol for local runs and tests. It is NOT Kiro.

It calls no model. Given a task it reads ``TASK.md`` in its working directory and makes a real,
deterministic change: it writes ``docs/<slug of the title>.md`` listing the title, objective and
acceptance criteria (the same TASK.md always gives byte-identical output).

Run ``python -m ec2_agent.kiro_emulator`` (or the ``kiro-emulator`` script) on a terminal.

Interactive protocol (what :mod:`ec2_agent.sessions.terminal` sees, ANSI colouring aside):

* start: an OSC window title, a banner naming the emulator, then the prompt — the line
  ``Model: Auto (/model to change)`` followed by ``> `` (no newline after it);
* a task (any other input line): ``Context: N message(s) in this conversation``, progress lines
  (some start with ``> ``, like Kiro's replies), the tool request
  ``Allow this action? Use 't' to trust (always allow) the 'fs_write' tool for the session. [y/n/t]: ``
  unless ``fs_write`` is already trusted; ``y`` writes, ``t`` writes and trusts the tool for the rest
  of the session (as Kiro does, ``/clear`` keeps the trust), anything else skips the write and says
  so; then a summary and the prompt again;
* ``/clear``: asks ``Are you sure? This will erase the conversation history for the current
  session. [y/n]: ``; ``y`` empties the conversation (its length shows in the next task's
  ``Context:`` line); ``/quit``, ``/exit``, ``/q``: exit 0; ``/help``: the command list;
* Ctrl-C while working: ``Interrupted: the task was stopped.`` and the prompt (a file is written
  atomically with SIGINT blocked, so it is never half-written); Ctrl-C at the prompt: a new prompt;
  end of input: exit 0.

Headless: ``python -m ec2_agent.kiro_emulator chat --no-interactive --trust-all-tools "<prompt>"``
does one task without prompt or approval and exits 0 (3 on ``crash``); without
``--trust-all-tools`` it skips the write, as Kiro denies untrusted tools when it cannot ask.
``chat`` and ``--legacy-ui`` are accepted and ignored, so the ``kiro-*`` profiles can run the
emulator by overriding their command.

Directives in TASK.md, in an HTML comment (several may be combined with commas):
``<!-- emulator: hang -->`` never finishes (Ctrl-C still interrupts it);
``<!-- emulator: wedge -->`` never finishes and ignores Ctrl-C, with a tool subprocess in its
process group (only killing the group ends it);
``<!-- emulator: crash -->`` exits with status 3 mid-task;
``<!-- emulator: flood=50 -->`` prints 50 MB of output, then finishes normally (default 10);
``<!-- emulator: no-change -->`` finishes without writing;
``<!-- emulator: slow=2.5 -->`` works 2.5 s instead of ``KIRO_EMULATOR_WORK_S``.

Environment: ``KIRO_EMULATOR_WORK_S`` — seconds of simulated work per task (default 0.2).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, TextIO

from ec2_agent.prompting import TASK_FILE, strip_control

__all__ = ["Directives", "TaskSpec", "main", "parse_task", "render_change", "slug"]

CRASH_STATUS: Final = 3
MODEL_LINE: Final = "Model: Auto (/model to change)"
APPROVAL_QUESTION: Final = (
    "Allow this action? Use 't' to trust (always allow) the 'fs_write' tool for the session. [y/n/t]: "
)
CLEAR_QUESTION: Final = (
    "Are you sure? This will erase the conversation history for the current session. [y/n]: "
)
_MAX_TASK_BYTES: Final = 1 << 20
_FLOOD_BLOCK: Final = "".join(
    f"\x1b[2mflood {n:04d}\x1b[0m the emulator is printing a large amount of output on purpose .........\n"
    for n in range(640)
)

_DIRECTIVE = re.compile(r"<!--\s*emulator:\s*(.*?)\s*-->", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*:?\s*#*\s*$")
_LABEL = re.compile(r"^(objective|constraints|acceptance criteria|description)\s*:\s*(.*)$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?(.*\S)\s*$")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Directives:
    """Per-task behaviour requested by TASK.md (see the module docstring)."""

    hang: bool = False
    wedge: bool = False
    crash: bool = False
    flood_mb: float = 0.0
    no_change: bool = False
    slow_s: float | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What the emulator takes from TASK.md; every field is a clean single line."""

    title: str
    objective: str
    criteria: tuple[str, ...]
    directives: Directives


def _clean(text: str) -> str:
    return " ".join(strip_control(text).split())


def _parse_directives(text: str) -> Directives:
    values: dict[str, str] = {}
    for block in _DIRECTIVE.findall(text):
        for token in re.split(r"[,\s]+", block):
            name, _, value = token.partition("=")
            if name:
                values[name.lower()] = value
    flood = values.get("flood")
    slow = values.get("slow")
    return Directives(
        hang="hang" in values,
        wedge="wedge" in values,
        crash="crash" in values,
        flood_mb=float(flood or 10) if flood is not None else 0.0,
        no_change="no-change" in values,
        slow_s=float(slow) if slow else None,
    )


def parse_task(text: str) -> TaskSpec:
    """Read title (first ``# `` heading), objective and acceptance criteria from TASK.md text.

    Accepts Markdown headings (``## Acceptance criteria``) and label lines (``Objective: ...``,
    ``Acceptance Criteria:``); without an objective section the first paragraph after the title is
    the objective. Raises ``ValueError`` for a malformed directive value.
    """
    directives = _parse_directives(text)
    lines = _DIRECTIVE.sub("", text).splitlines()
    title = ""
    section = ""
    sections: dict[str, list[str]] = {}
    preamble: list[str] = []
    for line in lines:
        heading = _HEADING.match(line)
        label = _LABEL.match(line.strip())
        if heading and not title and line.startswith("# "):
            title = _clean(heading.group(1))
            section = ""
        elif heading:
            section = heading.group(1).lower()
        elif label:
            section = label.group(1).lower()
            if label.group(2).strip():
                sections.setdefault(section, []).append(label.group(2))
        elif section:
            sections.setdefault(section, []).append(line)
        else:
            preamble.append(line)
    objective_lines = next((body for name, body in sections.items() if "objective" in name), None)
    if objective_lines is None:
        objective_lines = _first_paragraph(preamble)
    criteria_lines = next((body for name, body in sections.items() if "acceptance" in name), [])
    criteria = tuple(_clean(m.group(1)) for line in criteria_lines if (m := _LIST_ITEM.match(line)))
    return TaskSpec(
        title=title or "Untitled task",
        objective=_clean(" ".join(objective_lines)),
        criteria=tuple(c for c in criteria if c),
        directives=directives,
    )


def _first_paragraph(lines: list[str]) -> list[str]:
    paragraph: list[str] = []
    for line in lines:
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            break
    return paragraph


def slug(title: str) -> str:
    """Return a file-name slug of ``title``: lowercase ASCII letters, digits and dashes (≤ 60)."""
    return _SLUG_DROP.sub("-", title.lower()).strip("-")[:60].strip("-") or "task"


def render_change(spec: TaskSpec) -> tuple[Path, str]:
    """Return the relative path and content the emulator writes for ``spec`` (deterministic)."""
    criteria = [f"- [x] {c}" for c in spec.criteria] or ["- (none given)"]
    content = "\n".join(
        [
            f"# {spec.title}",
            "",
            "Written by the Kiro CLI emulator (ec2_agent.kiro_emulator) from TASK.md; not by Kiro.",
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
    return Path("docs") / f"{slug(spec.title)}.md", content


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _sigint_blocked():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(content)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _style(code: str, text: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


class Emulator:
    """One emulated chat session on ``out`` / ``inp`` (a terminal when driven through a PTY)."""

    def __init__(self, workdir: Path, out: TextIO, inp: TextIO, *, work_s: float, interactive: bool) -> None:
        self.workdir = workdir
        self.out = out
        self.inp = inp
        self.work_s = work_s
        self.interactive = interactive
        self.conversation: list[str] = []
        self.trusted: set[str] = set()

    def say(self, text: str = "", end: str = "\n") -> None:
        """Print and flush (the reader on the other side of the PTY sees it at once)."""
        self.out.write(text + end)
        self.out.flush()

    def ask(self, question: str) -> str | None:
        """Print ``question`` and return the answer line (``None`` at end of input)."""
        self.say(question, end="")
        line = self.inp.readline()
        return line.strip() if line else None

    def banner(self) -> None:
        """Print the start-up banner."""
        self.say("\x1b]0;kiro-cli (emulator)\x07", end="")
        self.say(
            _style("1;35", "Kiro CLI emulator")
            + " — ec2_agent.kiro_emulator, not Kiro (local runs and tests)"
        )
        self.say(_style("2", "/help lists commands, /clear resets the conversation, /quit exits."))
        self.say()

    def prompt(self) -> None:
        """Print the input prompt: the model line, then ``> `` with no newline."""
        self.say(_style("2", MODEL_LINE))
        self.say(_style("35", ">") + " ", end="")

    def run_task(self, request: str, *, trust_all: bool = False) -> None:
        """Do one task from TASK.md; raises ``KeyboardInterrupt`` on Ctrl-C, exits on ``crash``."""
        self.conversation.append(request)
        self.say(f"Context: {len(self.conversation)} message(s) in this conversation")
        task_path = self.workdir / TASK_FILE
        if not task_path.is_file():
            self.say(_style("31", f"I could not find {TASK_FILE} in {self.workdir}; nothing to do."))
            return
        raw = task_path.read_bytes()[:_MAX_TASK_BYTES].decode("utf-8", "replace")
        try:
            spec = parse_task(raw)
        except ValueError as exc:
            self.say(_style("31", f"Invalid emulator directive in {TASK_FILE}: {strip_control(str(exc))}"))
            return
        self.say(f"Reading {TASK_FILE} (using tool: fs_read)")
        self.say(_style("32", f" ✓ Successfully read {len(raw)} characters"))
        self.say(_style("32", ">") + f" I will implement: {spec.title}")
        self.say(_style("2", "⠋ Thinking..."), end="")
        self._work(spec.directives)
        self.say("\r\x1b[2K", end="")
        if spec.directives.no_change:
            self.say(_style("32", ">") + " Nothing in this repository needs to change.")
            return
        path, content = render_change(spec)
        self.say(f"I'll create the following file: {path} (using tool: fs_write)")
        if not self._approved("fs_write", trust_all=trust_all):
            self.say(_style("33", "Skipping the write: the tool use was not approved."))
            return
        _write_atomically(self.workdir / path, content)
        self.say(_style("32", f" ✓ Created {path} ({len(spec.criteria)} acceptance criteria)"))
        self.say(_style("32", ">") + f" Done: {spec.title}.")

    def _work(self, directives: Directives) -> None:
        if directives.crash:
            self.say(_style("31", "Error: emulated crash (TASK.md directive 'crash')"))
            os._exit(CRASH_STATUS)
        if directives.flood_mb > 0:
            self._flood(directives.flood_mb)
        if directives.wedge:
            self._wedge()
        if directives.hang:
            while True:
                signal.pause()
        time.sleep(directives.slow_s if directives.slow_s is not None else self.work_s)

    def _flood(self, megabytes: float) -> None:
        remaining = int(megabytes * 1_000_000)
        while remaining > 0:
            piece = _FLOOD_BLOCK[:remaining]
            self.out.write(piece)
            remaining -= len(piece)
        self.out.flush()

    def _wedge(self) -> NoReturn:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        code = (
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(3600)"
        )
        tool = subprocess.Popen([sys.executable, "-c", code])
        self.say(f"Running tool execute_bash (pid {tool.pid}), which does not return")
        tool.wait()
        while True:
            signal.pause()

    def _approved(self, tool: str, *, trust_all: bool) -> bool:
        if trust_all or tool in self.trusted:
            self.say(_style("2", f"{tool} is trusted for this session"))
            return True
        if not self.interactive:
            self.say(f"{tool} needs approval, which cannot be asked in --no-interactive mode")
            return False
        answer = self.ask(APPROVAL_QUESTION)
        if answer == "t":
            self.trusted.add(tool)
        return answer in ("y", "t")

    def command(self, line: str) -> bool:
        """Handle a slash command; return False when the session should end."""
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/clear":
            answer = self.ask(CLEAR_QUESTION)
            if answer is None:
                return False
            if answer.lower() == "y":
                self.conversation.clear()
                self.say("Conversation history cleared.")
            else:
                self.say("Not cleared.")
        elif name == "/help":
            self.say(
                "/clear  erase the conversation history\n/quit   exit (also /exit, /q)\n/help   this list"
            )
        else:
            self.say(f"Unknown command {strip_control(name)!r}; /help lists commands.")
        return True

    def loop(self) -> int:
        """Read lines until ``/quit`` or end of input; return the exit status."""
        self.banner()
        while True:
            self.prompt()
            try:
                line = self.inp.readline()
            except KeyboardInterrupt:
                self.say("^C")
                continue
            if not line:
                self.say()
                return 0
            request = strip_control(line).strip()
            try:
                if request.startswith("/"):
                    if not self.command(request):
                        return 0
                elif request:
                    self.run_task(request)
            except KeyboardInterrupt:
                self.say()
                self.say(_style("33", "Interrupted: the task was stopped."))


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = list(argv)
    if args[:1] == ["chat"]:
        args = args[1:]
    parser = argparse.ArgumentParser(
        prog="kiro-emulator", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--no-interactive", action="store_true", help="do one task and exit")
    parser.add_argument("--trust-all-tools", action="store_true", help="approve every tool without asking")
    parser.add_argument("--legacy-ui", action="store_true", help="accepted for Kiro compatibility; ignored")
    parser.add_argument("prompt", nargs="?", help="the task prompt (with --no-interactive)")
    parsed = parser.parse_args(args)
    if parsed.no_interactive != (parsed.prompt is not None):
        parser.error("a prompt is given exactly when --no-interactive is")
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator on stdin/stdout in the current directory; return the exit status."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace")
    emulator = Emulator(
        Path.cwd(),
        sys.stdout,
        sys.stdin,
        work_s=float(os.environ.get("KIRO_EMULATOR_WORK_S", "0.2")),
        interactive=not args.no_interactive,
    )
    if args.no_interactive:
        try:
            emulator.run_task(strip_control(args.prompt), trust_all=args.trust_all_tools)
        except KeyboardInterrupt:
            emulator.say(_style("33", "Interrupted."))
            return 130
        return 0
    return emulator.loop()


if __name__ == "__main__":
    sys.exit(main())
