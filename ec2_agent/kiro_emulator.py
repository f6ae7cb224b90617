"""Kiro CLI emulator: imitates the Kiro CLI's terminal protocol for local runs and tests. It is NOT Kiro.

It calls no model. Given a task it reads ``TASK.md`` in its working directory and makes a real,
deterministic change: it writes ``docs/<slug of the title>.md`` listing the title, objective and
acceptance criteria (the same TASK.md always gives byte-identical output).

Run ``python -m ec2_agent.kiro_emulator`` (or the ``kiro-emulator`` script) on a terminal.

Interactive protocol — the bytes of the Kiro CLI's classic interface, from the public source Kiro CLI
grew from (aws/amazon-q-developer-cli @ 15cc8f3, the chat crate) and its line editor
(kkawakam/rustyline @ 6f20aba):

* start: an OSC window title, a banner naming the emulator, ``Model: Auto (/model to change)`` once
  (not per turn), then the prompt;
* the prompt is read the way rustyline reads a line (``src/lib.rs`` 698-708 ``readline_with``): the
  terminal goes to raw mode (``src/tty/unix.rs`` 1683-1705: no ICANON, ECHO, IEXTEN, ISIG, ICRNL), bracketed
  paste is turned on (``ESC[?2004h``, unix.rs 1451-1460), and every redraw is ``CR ESC[K`` + coloured prompt +
  line + ``CR ESC[<col>C`` (unix.rs 1039-1101 ``refresh_line``; earlier rows of a wrapped line are cleared
  with ``CR ESC[K ESC[A``, 975-989). CR submits; Ctrl-J (LF) inserts a newline; a bracketed paste is inserted
  with CR turned into LF (unix.rs 897-898); Ctrl-C at the prompt prints an exit hint (a second one exits);
  Ctrl-D on an empty line exits. On submit: ``ESC[?2004l``, the terminal mode is restored, then ``\n``.
  The prompt is ``> `` in colour 141, preceded by the context use (``35% ``, green) once the conversation is
  not empty (Q CLI ``prompt.rs`` 459-500);
* a task (any other input): ``Context: N message(s) in this conversation``, progress lines (the reply starts
  with a green ``> ``, like Kiro's), the tool request
  ``\nAllow this action? Use 't' to trust (always allow) this tool for the session. [y/n/t]:\n\n``
  (Q CLI ``mod.rs`` 2021-2042) unless ``fs_write`` is already trusted, then the prompt is read again — raw
  mode begins only then, ``KIRO_EMULATOR_RAW_DELAY_S`` after the question (an answer typed earlier arrives
  line-disciplined, CR turned into LF, and is not submitted, as with Kiro); ``y``/``t`` write (``t`` also
  trusts the tool for the session, kept across ``/clear``), anything else skips the write; then a summary
  and the prompt again;
* ``/clear``: ``\nAre you sure? This will erase the conversation history and context from hooks for the
  current session. [y/n]:\n\n`` and a yellow ``> `` prompt; ``y`` prints ``\nConversation history
  cleared.\n\n`` (Q CLI ``cli/clear.rs`` 26-66); ``/quit``, ``/exit``, ``/q``: exit 0; ``/help``;
* Ctrl-C while working (the terminal is in its normal mode then): ``Interrupted: the task was stopped.``
  and the prompt (a file is written atomically with SIGINT blocked, so it is never half-written).

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

A follow-up brief (the TASK.md of a follow-up job, lambda_src.taskdoc.render_follow_up_brief) that names
a file (``File: `` + the path in a code span + ``, line N``) also gets one line appended to that file, when
it is a regular file inside the working directory: the change touches the file the reviewer commented on.

Environment: ``KIRO_EMULATOR_WORK_S`` — seconds of simulated work per task (default 0.2);
``KIRO_EMULATOR_RAW_DELAY_S`` — seconds between printing a question and reading its answer in raw mode
(default 0.05).
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
import termios
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
    "Allow this action? Use 't' to trust (always allow) this tool for the session. [y/n/t]:"
)
CLEAR_QUESTION: Final = (
    "Are you sure? This will erase the conversation history and context from hooks for the current "
    "session. [y/n]:"
)
PROMPT_COLOUR: Final = "38;5;141"  # Kiro's prompt colour, as recorded in the transcript
EXIT_HINT: Final = "(To exit the CLI, press Ctrl+C or Ctrl+D again or type /quit)"
BRACKETED_PASTE_ON: Final = "\x1b[?2004h"
BRACKETED_PASTE_OFF: Final = "\x1b[?2004l"
_PASTE_START: Final = b"\x1b[200~"
_PASTE_END: Final = b"\x1b[201~"
_KEY_SEQUENCE: Final = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|[^\[O])", re.DOTALL)
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
_FOLLOW_UP_FILE = re.compile(r"^File: (`+) (.+?) \1(?:, line (\d+))?$", re.MULTILINE)


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
    file: str | None = None  # a follow-up brief's file (a review comment's), relative to the workdir
    line: int | None = None


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
    follow_up = _FOLLOW_UP_FILE.search(text.split("```", 1)[0])  # the brief's own line, not the quote
    return TaskSpec(
        title=title or "Untitled task",
        objective=_clean(" ".join(objective_lines)),
        criteria=tuple(c for c in criteria if c),
        directives=directives,
        file=follow_up.group(2) if follow_up else None,
        line=int(follow_up.group(3)) if follow_up and follow_up.group(3) else None,
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


def _layout(prompt_width: int, line: str, cols: int) -> tuple[int, int]:
    """Where the end of ``prompt + line`` falls (row, column), wrapping at ``cols`` (rustyline's
    ``compute_layout`` for a cursor at the end of the line)."""
    row, col = 0, prompt_width
    for char in line:
        if char == "\n":
            row, col = row + 1, 0
            continue
        col += 1
        if col == cols:
            row, col = row + 1, 0
    return row, col


class LineEditor:
    """Reads a line the way rustyline does on a terminal (see the module docstring for the sources)."""

    def __init__(self, fd: int, out: TextIO) -> None:
        self._fd = fd
        self._out = out
        self._rows = 0  # rows of the last redraw below its first

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def _refresh(self, styled_prompt: str, prompt_width: int, line: str) -> None:
        cols = os.get_terminal_size(self._fd).columns if os.isatty(self._fd) else 80
        buffer = "\r\x1b[K\x1b[A" * self._rows + "\r\x1b[K" + styled_prompt + line
        row, col = _layout(prompt_width, line, cols)
        if col == 0 and row > 0 and not line.endswith("\n"):
            buffer += "\n"
        buffer += f"\r\x1b[{col}C" if col > 0 else "\r"
        self._rows = row
        self._write(buffer)

    def read(self, styled_prompt: str, prompt_width: int) -> str | None:
        """The submitted line; ``None`` at end of input (Ctrl-D on an empty line). Raises
        ``KeyboardInterrupt`` for Ctrl-C. Not a terminal: prints the prompt and reads a line."""
        if not os.isatty(self._fd):
            self._write(styled_prompt)
            data = sys.stdin.readline()
            return data.rstrip("\n") if data else None
        original = termios.tcgetattr(self._fd)
        raw = termios.tcgetattr(self._fd)
        raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
        raw[2] |= termios.CS8
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self._fd, termios.TCSADRAIN, raw)
        self._write(BRACKETED_PASTE_ON)
        self._rows = 0
        try:
            return self._edit(styled_prompt, prompt_width)
        finally:
            self._write(BRACKETED_PASTE_OFF)
            termios.tcsetattr(self._fd, termios.TCSADRAIN, original)
            self._write("\n")

    def _edit(self, styled_prompt: str, prompt_width: int) -> str | None:
        line = ""
        pending = b""
        self._refresh(styled_prompt, prompt_width, line)
        while True:
            data = os.read(self._fd, 4096)
            if not data:
                return None
            pending += data
            while pending:
                key = pending[0]
                if pending.startswith(_PASTE_START):
                    end = pending.find(_PASTE_END)
                    if end < 0:
                        break  # the rest of the paste is still coming
                    text = pending[len(_PASTE_START) : end].decode("utf-8", "replace")
                    line += text.replace("\r\n", "\n").replace("\r", "\n")
                    pending = pending[end + len(_PASTE_END) :]
                elif key == 0x1B:
                    found = _KEY_SEQUENCE.match(pending)
                    if found is None or _PASTE_START.startswith(pending):
                        break  # incomplete: wait for the rest
                    pending = pending[found.end() :]  # other keys (arrows, ...) are not emulated
                elif key == 0x0D:  # Enter (CR): submit
                    return line
                elif key == 0x03:  # Ctrl-C
                    raise KeyboardInterrupt
                elif key == 0x04 and not line:  # Ctrl-D on an empty line
                    return None
                elif key in (0x7F, 0x08):
                    line, pending = line[:-1], pending[1:]
                elif key == 0x0A or key >= 0x20:  # Ctrl-J inserts a newline; text is inserted
                    size = 1 if key < 0xC0 else 2 if key < 0xE0 else 3 if key < 0xF0 else 4
                    if len(pending) < size:
                        break
                    line += pending[:size].decode("utf-8", "replace")
                    pending = pending[size:]
                else:
                    pending = pending[1:]  # other control keys are not emulated
            self._refresh(styled_prompt, prompt_width, line)


class Emulator:
    """One emulated chat session on ``out`` / ``inp`` (a terminal when driven through a PTY)."""

    def __init__(
        self,
        workdir: Path,
        out: TextIO,
        inp: TextIO,
        *,
        work_s: float,
        interactive: bool,
        raw_delay_s: float = 0.05,
    ) -> None:
        self.workdir = workdir
        self.out = out
        self.inp = inp
        self.editor = LineEditor(inp.fileno(), out)
        self.work_s = work_s
        self.raw_delay_s = raw_delay_s
        self.interactive = interactive
        self.conversation: list[str] = []
        self.trusted: set[str] = set()

    def say(self, text: str = "", end: str = "\n") -> None:
        """Print and flush (the reader on the other side of the PTY sees it at once)."""
        self.out.write(text + end)
        self.out.flush()

    def ask(self, question: str, *, confirm: bool = False) -> str | None:
        """Print ``question`` as Kiro does (in the terminal's normal mode), then, ``raw_delay_s`` later, read
        the answer with the prompt in raw mode; ``None`` at end of input. ``confirm``: the yellow prompt
        of ``/clear``'s confirmation."""
        self.say("\n" + _style("90", question) + "\n")
        time.sleep(self.raw_delay_s)
        try:
            line = self.read_prompt(confirm=confirm)
        except KeyboardInterrupt:
            return ""
        return line.strip() if line is not None else None

    def read_prompt(self, *, confirm: bool = False) -> str | None:
        """Read a line at Kiro's prompt (``35% > ``: context use, then ``> ``). Raises KeyboardInterrupt."""
        if confirm:
            return self.editor.read(_style("38;5;11", "> "), 2)
        usage = f"{min(99, 30 + 5 * len(self.conversation))}% " if self.conversation else ""
        styled = (_style("32", usage) if usage else "") + _style(PROMPT_COLOUR, "> ")
        return self.editor.read(styled, len(usage) + 2)

    def banner(self) -> None:
        """Print the start-up banner."""
        self.say("\x1b]0;kiro-cli (emulator)\x07", end="")
        self.say(
            _style("1;35", "Kiro CLI emulator")
            + " — ec2_agent.kiro_emulator, not Kiro (local runs and tests)"
        )
        self.say(_style("2", "/help lists commands, /clear resets the conversation, /quit exits."))
        self.say()
        self.say(_style("2", MODEL_LINE))
        self.say()

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
        if spec.file is not None:
            self._follow_up_on(spec.file, spec.line)
        self.say(_style("32", ">") + f" Done: {spec.title}.")

    def _follow_up_on(self, name: str, line: int | None) -> None:
        """Append one line to the reviewed file: only a regular file inside the working directory."""
        root = self.workdir.resolve()
        target = (self.workdir / name).resolve()
        if root not in target.parents or not target.is_file() or (self.workdir / name).is_symlink():
            self.say(_style("33", f"Skipping {strip_control(name)}: not a file of this repository."))
            return
        where = f" (line {line})" if line else ""
        with target.open("a", encoding="utf-8", newline="\n") as handle:
            handle.write(f"\nFollow-up{where}: written by the Kiro CLI emulator, not by Kiro.\n")
        self.say(_style("32", f" ✓ Updated {strip_control(name)} (using tool: fs_write)"))

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
        if answer in ("t", "T"):
            self.trusted.add(tool)
        return answer in ("y", "Y", "t", "T")

    def command(self, line: str) -> bool:
        """Handle a slash command; return False when the session should end."""
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/clear":
            answer = self.ask(CLEAR_QUESTION, confirm=True)
            if answer is None:
                return False
            if answer in ("y", "Y"):
                self.conversation.clear()
                self.say(_style("32", "\nConversation history cleared.\n"))
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
        interrupted = False
        while True:
            try:
                line = self.read_prompt()
            except KeyboardInterrupt:
                if interrupted:
                    return 0
                interrupted = True
                self.say(_style("33", EXIT_HINT))
                continue
            interrupted = False
            if line is None:
                return 0
            request = strip_control(line).strip()
            try:
                if request.startswith("/"):
                    if not self.command(request):
                        return 0
                elif request:
                    self.run_task(request)
                    self.say()
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
    parser.add_argument(
        "--v2", action="store_true", help="accepted for Kiro compatibility (harness); ignored"
    )
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
        raw_delay_s=float(os.environ.get("KIRO_EMULATOR_RAW_DELAY_S", "0.05")),
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
