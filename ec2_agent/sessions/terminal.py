"""A persistent coding-agent CLI in a pseudo-terminal, judged on a rendered screen.

The only module that imports pexpect. Output is fed to a VT100 screen (``pyte``, a maintained terminal
emulator library), and every decision is taken on what that screen shows, as a person would take it:

* **ready**: the profile's ``ready_pattern`` matches the screen text up to the cursor, no ``busy_pattern``
  shows anywhere, no question is showing, the terminal is in raw mode (for ``raw_input`` CLIs: the CLI is
  reading keys), and the screen has not changed for ``quiet_s``. After a prompt is submitted, readiness
  only counts once the screen has changed since Enter was sent.
* **questions** are answered only under the same conditions (the current state of the screen, stable for
  the quiet period, the CLI reading keys), once: a question still showing after its answer is not answered
  again until it has gone. A question's text scrolled above the cursor (an echo) is not the screen's state.
* **typing**: the text is sent (as a bracketed paste when the profile says so and the CLI has turned
  bracketed paste on), the driver waits until its end shows in the CLI's input area (``input_rows`` up to
  the cursor) and the screen is then quiet for ``quiet_s``, then sends Enter as a write of its own — an
  event on the screen, not a fixed delay.
* **terminal queries** (cursor position ``ESC[6n``, device status ``ESC[5n``, primary device attributes
  ``ESC[c``) are answered as a terminal multiplexer does, from the rendered screen.
* **clean before each task**: unread output is taken and the screen must show the ready state; otherwise
  the CLI is restarted before the task is sent.

Every wait has a deadline; reads block in ``select`` at most ``_TICK_S`` so a cancel event is seen
promptly; output is read in ``_READ_SIZE`` pieces and only a bounded transcript tail is kept. Commands are
argument lists; the CLI leads its own session and process group, so ending it is SIGINT → SIGTERM → SIGKILL
to the group. A :class:`TerminalSession` belongs to one thread; only ``cancel`` may be set from another.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import signal
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pexpect
import pyte

from ec2_agent.profiles import CliProfile, Question
from ec2_agent.prompting import TerminalTextStream, strip_control
from ec2_agent.sessions.base import (
    CommandSandbox,
    OutcomeKind,
    SessionError,
    SessionStartError,
    Tail,
    TaskOutcome,
    Unsandboxed,
    child_environment,
)

__all__ = ["TerminalSession", "VirtualScreen"]

logger = logging.getLogger(__name__)

_TICK_S = 0.2  # longest uninterrupted block in select: how promptly cancel / deadlines are seen
_POLL_S = 0.02  # re-check of the terminal mode while the screen is settled (mode changes print nothing)
_READ_SIZE = 256 * 1024  # most characters taken from the PTY per read
_ERROR_TAIL_CHARS = 2000  # output quoted in exception messages
_PROBE_CHARS = 24  # the end of typed text looked for in the input area
_BRACKETED_PASTE_MODE = 2004 << 5  # pyte stores private (DEC) modes shifted left by 5
_PASTE_START, _PASTE_END = "\x1b[200~", "\x1b[201~"
# Ignored when looking for typed text: whitespace (wrapping) and box drawing (input box borders).
_NOT_TEXT = re.compile(r"[\s\u2500-\u259f]+")
_QUERY = re.compile(r"\x1b\[[?>]?[0-9;]*[nc]")  # device status / attributes queries: answer at once
_RENDER_BATCH_CHARS = 2 * 1024 * 1024  # most output held back from the screen while it keeps coming
# Anything but plain output (printable characters, CR, LF, tab, backspace, SGR colour codes), whole:
# control sequences other than SGR (ECMA-48 CSI), OSC strings, other escapes, a sequence cut off at the end,
# and C0/C1 controls.
_CONTROL_CHAR = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # also ESC; not CR, LF, tab, BS
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_NOT_PLAIN = re.compile(
    r"\x1b\[(?![0-9;:]*m)[0-?]*[ -/]*(?:[@-~]|\Z)"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|\Z)"
    r"|\x1b(?:[^\[\]]|\Z)"
    r"|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f]"
)

_Stop = Literal["eof", "timeout", "cancelled"]
_Wait = Literal["ready", _Stop]
_Log = logging.Logger | logging.LoggerAdapter[Any]


def _not_plain(text: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` holds anything but plain output (see ``_NOT_PLAIN``), as (start, end) spans. Control
    characters are found by a character-class scan; only escapes are looked at one by one, so colour codes
    on every line cost little."""
    position = 0
    while True:
        found = _CONTROL_CHAR.search(text, position)
        if found is None:
            return
        start = found.start()
        sgr = _SGR.match(text, start)
        if sgr is not None:
            position = sgr.end()
            continue
        sequence = _NOT_PLAIN.match(text, start)
        end = sequence.end() if sequence is not None else start + 1
        yield start, end
        position = end


def _tolerant(handler: Callable[..., None]) -> Callable[..., None]:
    """A control-sequence handler that ignores what a terminal ignores: a private variant (``CSI ? … m``,
    ``CSI > … m``) of a sequence the handler has no private form of, and malformed parameters. pyte 0.8.2
    raises ``TypeError`` for both, which real CLIs send (Gemini CLI sends ``CSI > 4 ; 2 m``)."""
    parameters = inspect.signature(handler).parameters.values()
    takes_private = any(p.name == "private" or p.kind is p.VAR_KEYWORD for p in parameters)

    def handle(*params: Any, private: bool = False) -> None:
        if private and not takes_private:
            return
        with contextlib.suppress(TypeError):
            handler(*params, **({"private": True} if private else {}))

    return handle


class VirtualScreen(pyte.Screen):
    """A pyte screen that answers the terminal queries a CLI sends (through ``reply``), renders rows
    cheaply and tells whether what it shows changed.

    pyte renders about 0.2 MB/s here, so :meth:`feed_output` leaves out what can only scroll off the screen
    unseen: of a run of plain output (printable characters, line breaks, tabs, backspaces and colour codes)
    with more line breaks than it takes to scroll the whole screen, only the lines that stay are rendered
    (unless a scrolling region is set). Every
    other sequence (cursor movement, modes, queries) is always rendered, in order.
    """

    def __init__(self, columns: int, lines: int, reply: Callable[[str], None]) -> None:
        super().__init__(columns, lines)
        self._reply = reply
        for name in set(pyte.Stream.csi.values()):
            setattr(self, name, _tolerant(getattr(self, name)))
        self._stream = pyte.Stream(self)
        self._rows: list[str] = [""] * lines
        self._cursor = (0, 0)

    def feed_output(self, text: str) -> None:
        """Render ``text`` (what the CLI printed), answering any query in it."""
        if len(text) <= self.columns * self.lines:
            self._stream.feed(text)
            return
        start = 0
        for found in _not_plain(text):
            self._feed_plain(text, start, found[0])
            self._stream.feed(text[found[0] : found[1]])
            start = found[1]
        self._feed_plain(text, start, len(text))

    def _feed_plain(self, text: str, start: int, end: int) -> None:
        """Render a run of plain output; with no scrolling region set, only from the CR LF before its last
        ``2 * lines - y`` line breaks (from cursor row ``y``, that many scroll every earlier line off the
        screen, and after CR LF the column does not depend on what came before)."""
        if self.margins is None or (self.margins.top, self.margins.bottom) == (0, self.lines - 1):
            cut = end
            for _ in range(2 * self.lines - self.cursor.y):
                cut = text.rfind("\n", start, cut)
                if cut < 0:
                    break
            else:
                cut = text.rfind("\r\n", start, cut + 1)  # after CR LF the column is 0 whatever came before
                if cut >= 0:
                    start = cut
        if start < end:
            self._stream.feed(text[start:end])

    def write_process_input(self, data: str) -> None:
        """pyte's hook for answers to queries (DSR, DA): they go back to the CLI's input."""
        self._reply(data)

    def report_device_status(self, mode: int, **kwargs: Any) -> None:
        """DSR 5 (status) and 6 (cursor position); ``ESC[?6n`` is answered like ``ESC[6n``."""
        super().report_device_status(mode)

    def row(self, y: int) -> str:
        """Row ``y`` as text (cells never written are blanks; the stub after a wide character is empty)."""
        line = self.buffer[y]
        if not line:
            return " " * self.columns
        cells = [" "] * self.columns
        for x, char in line.items():
            if x < self.columns:
                cells[x] = char.data
        return "".join(cells)

    def changed(self) -> bool:
        """Whether the text shown or the cursor position differs from the last call (first call: True
        unless the screen is blank)."""
        differs = (self.cursor.x, self.cursor.y) != self._cursor
        self._cursor = (self.cursor.x, self.cursor.y)
        for y in self.dirty:
            if y < len(self._rows):
                text = self.row(y)
                if text != self._rows[y]:
                    self._rows[y] = text
                    differs = True
        self.dirty.clear()
        return differs

    def text_to_cursor(self) -> str:
        """Rows above the cursor (trailing blanks removed) and the cursor's row up to the cursor."""
        y, x = self.cursor.y, self.cursor.x
        return "\n".join([*(self.row(r).rstrip() for r in range(y)), self.row(y)[:x]])

    def text(self) -> str:
        """The whole screen, rows with trailing blanks removed."""
        return "\n".join(self.row(y).rstrip() for y in range(self.lines))

    def input_area(self, rows: int) -> str:
        """The ``rows`` rows ending at the cursor's row, without whitespace or box drawing characters."""
        y = self.cursor.y
        return _NOT_TEXT.sub("", "".join(self.row(r) for r in range(max(0, y - rows + 1), y + 1)))

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Resize (pyte's), keeping the change tracking in step."""
        super().resize(lines, columns)
        self._rows = [""] * self.lines
        self.dirty.update(range(self.lines))

    @property
    def bracketed_paste(self) -> bool:
        """The CLI has turned bracketed paste on (``ESC[?2004h``)."""
        return _BRACKETED_PASTE_MODE in self.mode


class TerminalSession:
    """One persistent CLI in a pseudo-terminal, driven according to a terminal :class:`CliProfile`.

    ``on_output`` receives every cleaned chunk of output (it must not raise); ``sandbox`` wraps the command
    before it is spawned (default: run it as given). Raises ``ValueError`` for a profile of another kind.
    """

    def __init__(
        self,
        profile: CliProfile,
        workdir: Path,
        *,
        transcript_limit_bytes: int = 64 * 1024,
        on_output: Callable[[str], None] | None = None,
        log: _Log | None = None,
        sandbox: CommandSandbox | None = None,
    ) -> None:
        if profile.kind != "terminal":
            raise ValueError(
                f"{profile.name}: a terminal session needs a terminal profile, not {profile.kind!r}"
            )
        self._profile = profile
        self._sandbox: CommandSandbox = sandbox if sandbox is not None else Unsandboxed()
        self._workdir = workdir
        self._on_output = on_output
        self._log: _Log = log if log is not None else logger
        self._tail = Tail(transcript_limit_bytes)
        self._stream = TerminalTextStream()
        self._ready = re.compile(profile.ready_pattern)
        self._busy = re.compile(profile.busy_pattern) if profile.busy_pattern else None
        self._questions: dict[str, list[tuple[re.Pattern[str], Question]]] = {
            phase: [(re.compile(q.pattern), q) for q in profile.questions_during(phase)]
            for phase in ("task", "reset")
        }
        self._screen = VirtualScreen(profile.cols, profile.rows, self._answer_query)
        self._changes = 0  # counts changes of what the screen shows
        self._changed_at = time.monotonic()
        self._unrendered: list[str] = []  # output read but not yet fed to the screen
        self._unrendered_chars = 0
        self._output_at = time.monotonic()
        self._recent = ""  # the end of the last chunk, so a query split across reads is seen
        self._child: Any = None  # pexpect.spawn (untyped)
        self._started = False
        self._restarts = 0

    # ----------------------------------------------------------------------------------- state

    @property
    def profile(self) -> CliProfile:
        """The profile this session runs."""
        return self._profile

    @property
    def workdir(self) -> Path:
        """The directory the CLI runs in."""
        return self._workdir

    @property
    def alive(self) -> bool:
        """The CLI process is running."""
        return self._child is not None and bool(self._child.isalive())

    @property
    def pid(self) -> int | None:
        """The CLI process id, else ``None``."""
        return int(self._child.pid) if self._child is not None else None

    @property
    def restarts(self) -> int:
        """How many times the session restarted its CLI (:meth:`restart`, or an unclean screen)."""
        return self._restarts

    @property
    def screen(self) -> VirtualScreen:
        """The rendered screen (read-only use: diagnostics and tests)."""
        return self._screen

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the CLI in the working directory and wait until it is ready (see the module docstring).

        Waits at most ``startup_timeout_s``; raises :class:`SessionStartError` (with the output tail) if
        the command cannot be run, exits, or is not ready in time, and :class:`SessionError` if it is
        already running.
        """
        if self.alive:
            raise SessionError("the session is already running")
        self._kill("starting afresh")  # a CLI that died on its own: reap it and close its terminal
        self._spawn(list(self._profile.argv))
        result, _ = self._await(time.monotonic() + self._profile.startup_timeout_s, None, phase=None)
        if result == "ready":
            self._started = True
            self._log.info("CLI session ready", extra={"profile": self._profile.name, "pid": self.pid})
            return
        tail = self._tail.text()
        if result == "eof":
            status = self._reap()
            self._discard()
            raise SessionStartError(
                f"{self._profile.name}: the CLI exited during start-up (status {status}): "
                f"{tail[-_ERROR_TAIL_CHARS:]}",
                tail,
            )
        screen = self._screen.text().strip()
        self._kill("not ready within the start-up timeout")
        raise SessionStartError(
            f"{self._profile.name}: no prompt within {self._profile.startup_timeout_s:g} s; "
            f"the screen shows: {screen[-_ERROR_TAIL_CHARS:]}",
            tail,
        )

    def run_task(
        self,
        prompt: str,
        *,
        timeout_s: float,
        cancel: threading.Event | None = None,
        on_prompt_sent: Callable[[], None] | None = None,
    ) -> TaskOutcome:
        """Give the CLI ``prompt`` and wait until its turn ends.

        Returns within about ``timeout_s`` + ``interrupt_timeout_s`` + twice ``kill_grace_s``; a set
        ``cancel`` is seen within ``_TICK_S`` (0.2 s). The session is first proven clean (else its CLI is
        restarted). Completion is the ready state after the screen changed from the moment Enter was sent;
        a profile error pattern in the turn's output makes it ``failed`` with the reason. On timeout or
        ``cancel``: the interrupt sequence, then up to ``interrupt_timeout_s`` for the ready state, else the
        process group is killed (``alive`` is false). The CLI exiting is ``crashed``.
        Raises ``ValueError`` if ``prompt`` is not one line free of control characters, and
        :class:`SessionError` if the session is not started or cannot be made clean.
        """
        if not prompt or strip_control(prompt) != prompt:
            raise ValueError("the prompt must be one non-empty line without control characters")
        if not self._started:
            raise SessionError("the session is not started")
        self._prove_clean()
        started = time.monotonic()
        self._tail.clear()
        typed = self._type(prompt, started + min(timeout_s, self._profile.input_timeout_s), cancel)
        if typed != "ready":
            return self._stop_turn(typed, started, 0, "the CLI did not show the typed task in its input area")
        before_enter = self._changes
        self._send("\r")
        if on_prompt_sent is not None:
            on_prompt_sent()
        result, approvals = self._await(started + timeout_s, cancel, phase="task", since=before_enter)
        if result == "ready":
            error = self._profile.error_in(self._tail.text())
            if error is not None:
                return self._outcome("failed", started, approvals, error)
            return self._outcome("completed", started, approvals, "")
        return self._stop_turn(result, started, approvals, "")

    def reset(self) -> None:
        """Clear the CLI's conversation (``reset_command``) and prove it: the ready state returns and, if
        the profile names one, the acknowledgement (``reset_done_pattern``) was printed.

        Waits at most ``reset_timeout_s`` and answers the reset's questions. No-op without a reset command.
        Raises :class:`SessionError` if the CLI is not running, exits, or the reset is not proven (the CLI
        is then killed).
        """
        command = self._profile.reset_command
        if command is None:
            return
        if not self.alive:
            raise SessionError("the CLI is not running; restart the session")
        deadline = time.monotonic() + self._profile.reset_timeout_s
        self._tail.clear()
        typed = self._type(command, deadline, None)
        result: _Wait = typed
        if typed == "ready":
            before_enter = self._changes
            self._send("\r")
            result, _ = self._await(deadline, None, phase="reset", since=before_enter)
        tail = self._tail.text()
        if result == "eof":
            self._reap()
            self._discard()
            raise SessionError("the CLI exited during the reset", tail)
        done = self._profile.reset_done_pattern
        if result == "ready" and (done is None or re.search(done, tail)):
            return
        self._kill("the reset was not acknowledged")
        raise SessionError(
            f"{command!r} was not acknowledged within {self._profile.reset_timeout_s:g} s", tail
        )

    def restart(self, workdir: Path | None = None) -> None:
        """Close the CLI and start it again (in ``workdir`` if given). Raises like :meth:`start`."""
        self.close()
        if workdir is not None:
            self._workdir = workdir
        self._restarts += 1
        self.start()

    def close(self) -> None:
        """End the CLI: ``quit_command`` typed if the CLI shows its prompt (``quit_timeout_s`` in all), then
        SIGINT → SIGTERM → SIGKILL to its process group, each followed by up to ``kill_grace_s``.
        Idempotent; never raises for a CLI that is already gone."""
        self._started = False
        if self._child is None:
            return
        command = self._profile.quit_command
        self._render()
        if command is not None and self._child.isalive() and self._is_ready(self._screen.text_to_cursor()):
            # Typed like a task (text, shown in the input area, then Enter as its own write): a CLI that
            # takes text and Enter in one write as a paste (Codex, Claude Code) would not submit it.
            deadline = time.monotonic() + self._profile.quit_timeout_s
            try:
                if self._type(command, deadline, None) == "ready":
                    self._send("\r")
                    self._wait_exit(max(deadline - time.monotonic(), self._profile.kill_grace_s))
            except OSError:
                pass  # the terminal is already closed: the signals below finish the job
        self._kill("closing", signals=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL))

    # ----------------------------------------------------------------- a person at the keyboard

    def read_raw(self, timeout_s: float) -> str | None:
        """What the CLI printed within ``timeout_s``, escape sequences kept (for a terminal emulator in a
        browser, which answers the CLI's queries itself): ``""`` if nothing came, ``None`` once the CLI has
        exited."""
        try:
            return str(self._child.read_nonblocking(_READ_SIZE, timeout=max(timeout_s, 0.0)))
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF:
            return None

    def write_raw(self, keys: str) -> None:
        """A person's keystrokes, as typed (their control keys are theirs to send). Raises OSError if the
        terminal is gone."""
        self._send(keys)

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal size the CLI sees (the rendered screen follows)."""
        self._child.setwinsize(rows, cols)
        self._screen.resize(rows, cols)

    # ----------------------------------------------------------------------------- internals

    def _spawn(self, argv: list[str]) -> None:
        # The PTY is the CLI's own, so no new session: Ctrl-C must reach it (see Sandbox.command).
        argv, env = self._sandbox.command(argv, child_environment(self._profile), new_session=False)
        self._tail.clear()
        self._stream = TerminalTextStream()
        self._screen = VirtualScreen(self._profile.cols, self._profile.rows, self._answer_query)
        self._unrendered.clear()
        self._unrendered_chars = 0
        self._mark_changed()
        try:
            child = pexpect.spawn(
                argv[0],
                argv[1:],
                cwd=str(self._workdir),
                env=env,
                encoding="utf-8",
                codec_errors="replace",
                dimensions=(self._profile.rows, self._profile.cols),
                maxread=_READ_SIZE,
                echo=True,
            )
        except (pexpect.ExceptionPexpect, OSError) as exc:
            raise SessionStartError(f"{self._profile.name}: cannot run {argv[0]!r}: {exc}") from exc
        child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        self._child = child
        self._log.debug("spawned CLI", extra={"argv0": argv[0], "pid": child.pid, "cwd": str(self._workdir)})

    def _send(self, text: str) -> None:
        self._child.send(text)

    def _answer_query(self, reply: str) -> None:
        """The screen's answer to a terminal query, written to the CLI's input."""
        if self._child is not None:
            with contextlib.suppress(OSError):
                self._send(reply)

    def _read(self, timeout: float) -> Literal["data", "eof", "timeout"]:
        """Read what the CLI printed within ``timeout`` seconds; render it on the screen and record it in the
        transcript as soon as output pauses, a batch is full or it holds a terminal query."""
        try:
            raw = self._child.read_nonblocking(_READ_SIZE, timeout=max(timeout, 0.0))
        except pexpect.TIMEOUT:
            self._render()
            return "timeout"
        except pexpect.EOF:
            self._render()
            self._record(self._stream.flush())
            return "eof"
        self._output_at = time.monotonic()
        self._unrendered.append(raw)
        self._unrendered_chars += len(raw)
        query = _QUERY.search(self._recent + raw) is not None
        self._recent = raw[-16:]
        if query or self._unrendered_chars >= _RENDER_BATCH_CHARS:
            self._render()
        return "data"

    def _render(self) -> None:
        """Feed the output read so far to the screen; a visible change dates from when it was read."""
        if not self._unrendered:
            return
        text = "".join(self._unrendered)
        self._unrendered.clear()
        self._unrendered_chars = 0
        self._screen.feed_output(text)
        keep = 2 * self._tail.limit  # more than the transcript tail can hold is not cleaned
        cut = text.find("\n", len(text) - keep) if len(text) > keep else -1
        if cut > 0:  # start afresh at a line break: no escape sequence spans it
            self._stream = TerminalTextStream()
            self._record(f"[… {cut + 1} characters of output not kept …]\n")
            text = text[cut + 1 :]
        self._record(self._stream.feed(text))
        if self._screen.changed():
            self._changes += 1
            self._changed_at = self._output_at

    def _record(self, text: str) -> None:
        if not text:
            return
        self._tail.append(text)
        if self._on_output is not None:
            self._on_output(text)

    def _mark_changed(self) -> None:
        self._changes += 1
        self._changed_at = time.monotonic()

    def _reading_keys(self) -> bool:
        """The CLI is reading keys: the terminal is out of canonical mode (or the profile does not say it
        reads in raw mode). Read from the PTY's termios, which the CLI's side shares."""
        if not self._profile.raw_input:
            return True
        try:
            lflag = termios.tcgetattr(self._child.child_fd)[3]
        except (termios.error, OSError):
            return False
        return not lflag & termios.ICANON

    def _settled(self, now: float) -> float:
        """Seconds until the screen has been unchanged for the quiet period (0: it has). Output not yet
        rendered counts as a change now."""
        if self._unrendered:
            return self._profile.quiet_s or _POLL_S
        return max(0.0, self._changed_at + self._profile.quiet_s - now)

    def _question(self, phase: str | None, text: str) -> tuple[int, Question] | None:
        if phase is None:
            return None
        for index, (pattern, question) in enumerate(self._questions[phase]):
            if pattern.search(text):
                return index, question
        return None

    def _is_ready(self, text: str) -> bool:
        if self._busy is not None and self._busy.search(self._screen.text()):
            return False
        return self._ready.search(text) is not None

    def _await(
        self,
        deadline: float,
        cancel: threading.Event | None,
        *,
        phase: Literal["task", "reset"] | None,
        since: int | None = None,
    ) -> tuple[_Wait, int]:
        """Wait for the ready state, answering the questions of ``phase`` (see the module docstring).

        ``since``: the screen's change count when Enter was sent; readiness counts only once the turn has
        started: the screen changed after it and, for a task and a profile with a ``busy_pattern``, showed it
        or one of the task's questions (a full-screen CLI clears its input box at once, which alone looks
        ready again; a fast model's busy line can come and go within one read). Returns how the
        wait ended and how many questions were answered.
        """
        answered = 0
        showing: int | None = None  # the question answered last, while it still shows: never twice
        moved = since is None
        seen = since
        while True:
            if cancel is not None and cancel.is_set():
                return "cancelled", answered
            now = time.monotonic()
            if now >= deadline:
                return "timeout", answered
            pending = self._settled(now)
            wait = min(_TICK_S, deadline - now, pending if pending > 0 and not self._unrendered else _POLL_S)
            if self._read(wait) == "eof":
                return "eof", answered
            if not moved and since is not None and self._changes != seen:
                seen = self._changes  # the screen changed after Enter: has the turn started?
                moved = (
                    phase != "task"
                    or self._busy is None
                    or self._busy.search(self._screen.text()) is not None
                    # A fast model: the busy line came and went within one read; the CLI asks already.
                    or self._question(phase, self._screen.text_to_cursor()) is not None
                )
            if self._settled(time.monotonic()) > 0 or not moved:
                continue
            text = self._screen.text_to_cursor()
            found = self._question(phase, text)
            if found is not None:
                if found[0] == showing or not self._reading_keys():
                    continue  # answered and still showing, or the CLI is not reading keys yet
                index, question = found
                self._send(question.answer)
                if question.enter:
                    self._send("\r")
                answered += 1
                showing = index
                moved = True
                self._mark_changed()  # judge the screen afresh after the answer
                self._log.info(
                    "answered the CLI's question", extra={"answer": question.answer, "phase": phase}
                )
                continue
            showing = None
            if self._is_ready(text) and self._reading_keys():
                return "ready", answered

    def _type(self, text: str, deadline: float, cancel: threading.Event | None) -> _Wait:
        """Send ``text`` (a bracketed paste when supported) and wait until its end shows in the input area and
        the screen has then stayed unchanged for the quiet period (Ink CLIs take keys that follow a paste
        too closely as part of it)."""
        if self._profile.bracketed_paste and self._screen.bracketed_paste:
            self._send(_PASTE_START + text + _PASTE_END)
        else:
            self._send(text)
        probe = _NOT_TEXT.sub("", text)[-_PROBE_CHARS:]
        self._render()
        while probe not in self._screen.input_area(self._profile.input_rows) or self._settled(
            time.monotonic()
        ):
            if cancel is not None and cancel.is_set():
                return "cancelled"
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            shown = probe in self._screen.input_area(self._profile.input_rows)
            wait = self._settled(now) if shown and not self._unrendered else _TICK_S
            if self._read(min(_POLL_S if self._unrendered else wait, deadline - now)) == "eof":
                return "eof"
            self._render()
        return "ready"

    def _prove_clean(self) -> None:
        """Take unread output; the screen must show the ready state within the quiet period, else the CLI
        is restarted. Raises :class:`SessionError` (or :class:`SessionStartError`) if it cannot be."""
        if not self.alive:
            raise SessionError("the CLI is not running; restart the session")
        deadline = time.monotonic() + self._profile.quiet_s + 2 * _TICK_S
        result, _ = self._await(deadline, None, phase=None)
        if result == "ready":
            return
        self._log.warning(
            "the CLI's screen is not clean before a task; restarting it",
            extra={"profile": self._profile.name, "screen": self._screen.text()[-500:], "result": result},
        )
        self._kill("unclean before a task")  # typing a quit command into an unclean input line is a guess
        self._restarts += 1
        self.start()

    def _stop_turn(self, result: _Stop, started: float, approvals: int, why: str) -> TaskOutcome:
        """End a turn that did not complete: EOF is crashed, otherwise interrupt (or kill)."""
        if result == "eof":
            return self._crashed(started, approvals)
        self._interrupt()
        kind: OutcomeKind = "cancelled" if result == "cancelled" else "timed_out"
        return self._outcome(kind, started, approvals, why or f"the task was {kind.replace('_', ' ')}")

    def _interrupt(self) -> None:
        """The interrupt sequence; keep the session if the ready state comes back, else kill the group.

        A line-reading CLI that has just taken Enter may still be in raw mode for a moment, where Ctrl-C is
        a key it reads later, not a signal: up to ``quiet_s`` is given for it to leave raw mode first (a
        full-screen CLI, always in raw mode, gets its interrupt key after that)."""
        settle = time.monotonic() + self._profile.quiet_s
        while self._profile.raw_input and self._reading_keys() and time.monotonic() < settle:
            if self._read(_POLL_S) == "eof":
                break
        before = self._changes
        try:
            self._send(self._profile.interrupt_sequence)
        except OSError:
            self._kill("the terminal is gone")
            return
        result, _ = self._await(
            time.monotonic() + self._profile.interrupt_timeout_s, None, phase=None, since=before
        )
        if result == "ready":
            self._log.info("CLI interrupted; it is ready again", extra={"pid": self.pid})
            return
        self._kill("not ready after an interrupt")

    def _kill(
        self,
        reason: str,
        signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL),
    ) -> None:
        """Signal the CLI's process group until the CLI has exited, then drop it."""
        if self._child is None:
            return
        pid = int(self._child.pid)
        for sig in signals:
            if not self._child.isalive():
                break
            self._log.warning(
                "signalling the CLI's process group", extra={"pid": pid, "signal": sig.name, "reason": reason}
            )
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if self._wait_exit(self._profile.kill_grace_s):
                break
        # The leader may be gone while others in its group live on: end them too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self._wait_exit(self._profile.kill_grace_s)
        self._discard()

    def _wait_exit(self, timeout: float) -> bool:
        """Drain output until the CLI process has exited; False if it is still running at ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._child.isalive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._read(min(_TICK_S, remaining))
        return True

    def _reap(self) -> int | None:
        """Collect the exit status after EOF (pexpect waits for the exiting process)."""
        self._child.isalive()
        if self._child.exitstatus is not None:
            return int(self._child.exitstatus)
        if self._child.signalstatus is not None:
            return -int(self._child.signalstatus)
        return None

    def _discard(self) -> None:
        """Close the PTY of a CLI that has exited and forget it."""
        child, self._child = self._child, None
        if child is None:
            return
        if not child.isalive():
            child.ptyproc.delayafterclose = 0.0  # already reaped: nothing to wait for
        child.close(force=True)

    def _crashed(self, started: float, approvals: int) -> TaskOutcome:
        self._render()
        status = self._reap()
        self._log.warning(
            "CLI exited during a task", extra={"exit_status": status, "profile": self._profile.name}
        )
        outcome = TaskOutcome(
            "crashed",
            self._tail.text(),
            status,
            time.monotonic() - started,
            approvals,
            f"the CLI exited during the task (status {status})",
        )
        self._discard()
        return outcome

    def _outcome(self, kind: OutcomeKind, started: float, approvals: int, reason: str) -> TaskOutcome:
        self._render()
        self._log.info("task ended", extra={"outcome": kind, "approvals": approvals, "reason": reason})
        return TaskOutcome(kind, self._tail.text(), None, time.monotonic() - started, approvals, reason)
