"""A persistent coding-agent CLI in a pseudo-terminal (pexpect): start, run a task, reset, close.

This is the only module that imports pexpect. Shape borrowed from pexpect's ``replwrap`` and
terminado's session manager:

* every wait has a deadline; end of output (EOF) and timeouts are typed outcomes, not exceptions;
* patterns are matched on an ANSI-stripped view of the output (:class:`TerminalTextStream` keeps
  escape sequences split across reads intact), within a bounded window of recent text;
* reads block in ``select`` until output arrives, waking at least every ``_TICK_S`` to honour a
  cancel event or a deadline — no fixed sleeps, no polling of the output;
* memory is bounded: output is read in ``_READ_SIZE`` pieces and never accumulated in pexpect's
  buffer; only a rolling tail (``transcript_limit_bytes``) and the match window are kept, so a CLI
  that prints tens of megabytes does not grow the agent;
* commands are argument lists (never a shell string); the child leads its own session and process
  group, so ending it means SIGINT → SIGTERM → SIGKILL to the whole group.

A :class:`TerminalSession` belongs to one thread; only ``cancel`` (a :class:`threading.Event`) may be
set from another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pexpect

from ec2_agent.profiles import CliProfile
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

__all__ = ["TerminalSession"]

logger = logging.getLogger(__name__)

_TICK_S = 0.2  # longest uninterrupted block in select: how promptly cancel / deadlines are seen
_READ_SIZE = 64 * 1024  # most characters taken from the PTY per read
_ERROR_TAIL_CHARS = 2000  # output quoted in exception messages

_Wait = Literal["ready", "eof", "timeout", "cancelled"]
_Question = Literal["approval", "confirm"]
_Log = logging.Logger | logging.LoggerAdapter[Any]


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


class TerminalSession:
    """One persistent CLI run through a pseudo-terminal according to a :class:`CliProfile`.

    ``on_output`` receives every cleaned chunk of output (it must not raise); ``sandbox`` wraps the
    command before it is spawned (default: run it as given).
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
        if profile.mode != "interactive":
            raise ValueError(f"{profile.name}: a terminal session needs an interactive profile")
        self._profile = profile
        self._sandbox: CommandSandbox = sandbox if sandbox is not None else Unsandboxed()
        self._workdir = workdir
        self._on_output = on_output
        self._log: _Log = log if log is not None else logger
        self._tail = Tail(transcript_limit_bytes)
        self._stream = TerminalTextStream()
        self._window = ""
        self._ready = re.compile(profile.ready_pattern)
        self._questions: dict[_Question, tuple[re.Pattern[str] | None, str]] = {
            "approval": (_compile(profile.approval_pattern), profile.approval_answer),
            "confirm": (_compile(profile.confirm_pattern), profile.confirm_answer),
        }
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
        """How many times :meth:`restart` has been called."""
        return self._restarts

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the CLI in the working directory and wait for its prompt.

        Waits at most ``startup_timeout_s``; raises :class:`SessionStartError` (with the output tail)
        if the command cannot be run, exits, or shows no prompt in time, and :class:`SessionError` if
        it is already running.
        """
        if self.alive:
            raise SessionError("the session is already running")
        self._kill("starting afresh")  # a CLI that died on its own: reap it and close its terminal
        self._spawn(list(self._profile.argv))
        result, _ = self._await(time.monotonic() + self._profile.startup_timeout_s, None)
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
        self._kill("no prompt within the start-up timeout")
        raise SessionStartError(
            f"{self._profile.name}: no prompt within {self._profile.startup_timeout_s:g} s: "
            f"{tail[-_ERROR_TAIL_CHARS:]}",
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
        """Give the CLI ``prompt`` and wait until the task ends.

        Returns within about ``timeout_s`` + ``interrupt_timeout_s`` + twice ``kill_grace_s``; a set
        ``cancel`` is seen within ``_TICK_S`` (0.2 s).

        Sends the prompt and Enter, answers tool approvals, and completes when the prompt returns
        (after ``settle_s`` of quiet, if set). On timeout or ``cancel``: Ctrl-C, then up to
        ``interrupt_timeout_s`` for the prompt, else the process group is killed and the session is
        dead (``alive`` is false; :meth:`restart` it). EOF means ``crashed``.
        Raises ``ValueError`` if ``prompt`` is not one line free of control characters, and
        :class:`SessionError` if the session is not started.
        """
        if not prompt or strip_control(prompt) != prompt:
            raise ValueError("the prompt must be one non-empty line without control characters")
        if not self._started:
            raise SessionError("the session is not started")
        if not self.alive:
            raise SessionError("the CLI is not running; restart the session")
        started = time.monotonic()
        self._tail.clear()
        if self._drain() == "eof":
            return self._crashed(started, 0)
        self._send(prompt + "\r")
        if on_prompt_sent is not None:
            on_prompt_sent()
        result, approvals = self._await(started + timeout_s, cancel, answering="approval")
        if result == "ready":
            return self._outcome("completed", started, approvals)
        if result == "eof":
            return self._crashed(started, approvals)
        self._interrupt()
        return self._outcome("cancelled" if result == "cancelled" else "timed_out", started, approvals)

    def reset(self) -> None:
        """Clear the CLI's conversation (``reset_command``) and wait for the prompt.

        Waits at most ``reset_timeout_s`` and answers ``confirm_pattern``. No-op without a reset
        command. Raises :class:`SessionError` if the CLI is not running, exits, or does not come back
        (it is then killed).
        """
        command = self._profile.reset_command
        if command is None:
            return
        if not self.alive:
            raise SessionError("the CLI is not running; restart the session")
        if self._drain() == "eof":
            self._reap()
            self._discard()
            raise SessionError("the CLI exited before the reset", self._tail.text())
        self._send(command + "\r")
        result, _ = self._await(time.monotonic() + self._profile.reset_timeout_s, None, answering="confirm")
        if result == "ready":
            return
        tail = self._tail.text()
        if result == "eof":
            self._reap()
            self._discard()
            raise SessionError("the CLI exited during the reset", tail)
        self._kill("no prompt after the reset command")
        raise SessionError(f"no prompt within {self._profile.reset_timeout_s:g} s of {command!r}", tail)

    def restart(self, workdir: Path | None = None) -> None:
        """Close the CLI and start it again (in ``workdir`` if given). Raises like :meth:`start`."""
        self.close()
        if workdir is not None:
            self._workdir = workdir
        self._restarts += 1
        self.start()

    def close(self) -> None:
        """End the CLI: ``quit_command`` (waiting ``quit_timeout_s``), then SIGINT → SIGTERM → SIGKILL
        to its process group, each followed by up to ``kill_grace_s``. Idempotent; never raises for a
        CLI that is already gone."""
        self._started = False
        if self._child is None:
            return
        command = self._profile.quit_command
        if command is not None and self._child.isalive():
            try:
                self._send(command + "\r")
            except OSError:
                pass  # the terminal is already closed: the signals below finish the job
            else:
                self._wait_exit(self._profile.quit_timeout_s)
        self._kill("closing", signals=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL))

    # ----------------------------------------------------------------- a person at the keyboard

    def read_raw(self, timeout_s: float) -> str | None:
        """What the CLI printed within ``timeout_s``, escape sequences kept (for a terminal emulator in a
        browser): ``""`` if nothing came, ``None`` once the CLI has exited."""
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
        """Set the terminal size the CLI sees."""
        self._child.setwinsize(rows, cols)

    # ----------------------------------------------------------------------------- internals

    def _spawn(self, argv: list[str]) -> None:
        # The PTY is the CLI's own, so no new session: Ctrl-C must reach it (see Sandbox.command).
        argv, env = self._sandbox.command(argv, child_environment(self._profile), new_session=False)
        self._tail.clear()
        self._stream = TerminalTextStream()
        self._window = ""
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
                searchwindowsize=self._profile.search_window_chars,
                echo=True,
            )
        except (pexpect.ExceptionPexpect, OSError) as exc:
            raise SessionStartError(f"{self._profile.name}: cannot run {argv[0]!r}: {exc}") from exc
        child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        self._child = child
        self._log.debug("spawned CLI", extra={"argv0": argv[0], "pid": child.pid, "cwd": str(self._workdir)})

    def _send(self, text: str) -> None:
        self._child.send(text)

    def _read(self, timeout: float) -> Literal["data", "eof", "timeout"]:
        """Read what the CLI printed within ``timeout`` seconds; clean it and record it."""
        try:
            raw = self._child.read_nonblocking(_READ_SIZE, timeout=max(timeout, 0.0))
        except pexpect.TIMEOUT:
            return "timeout"
        except pexpect.EOF:
            self._record(self._stream.flush())
            return "eof"
        self._record(self._stream.feed(raw))
        return "data"

    def _record(self, text: str) -> None:
        if not text:
            return
        self._tail.append(text)
        self._window = (self._window + text)[-self._profile.search_window_chars :]
        if self._on_output is not None:
            self._on_output(text)

    def _drain(self) -> Literal["eof", "timeout"]:
        """Take output printed between tasks without waiting, so old text cannot match."""
        for _ in range(64):
            result = self._read(0)
            if result != "data":
                self._window = ""
                return result
        self._window = ""
        return "timeout"

    def _await(
        self, deadline: float, cancel: threading.Event | None, *, answering: _Question | None = None
    ) -> tuple[_Wait, int]:
        """Wait until the ready pattern shows (and, with ``settle_s``, output stays quiet that long).

        Answers the questions of kind ``answering`` (tool approvals during a task, confirmations
        during a reset). Returns how the wait ended and how many questions were answered.
        """
        pattern, reply = self._questions[answering] if answering is not None else (None, "")
        answered = 0
        settle_until: float | None = None
        while True:
            if cancel is not None and cancel.is_set():
                return "cancelled", answered
            now = time.monotonic()
            if settle_until is not None and now >= settle_until:
                self._window = ""
                return "ready", answered
            if now >= deadline:
                return "timeout", answered
            result = self._read(min(_TICK_S, deadline - now, (settle_until or deadline) - now))
            if result == "eof":
                return "eof", answered
            if result == "timeout":
                continue
            settle_until = None
            question = pattern.search(self._window) if pattern is not None else None
            ready = self._ready.search(self._window) if self._ready is not None else None
            if question is not None and (ready is None or question.start() < ready.start()):
                self._send(reply + "\r")
                answered += 1
                self._window = ""  # the text after a question is its input line, not the ready prompt
            elif ready is not None and self._profile.settle_s > 0:
                settle_until = time.monotonic() + self._profile.settle_s
            elif ready is not None:
                self._window = ""
                return "ready", answered

    def _interrupt(self) -> None:
        """Ctrl-C; keep the session if the prompt comes back, else kill the process group."""
        self._window = ""
        try:
            self._send(self._profile.interrupt_sequence)
        except OSError:
            self._kill("the terminal is gone")
            return
        result, _ = self._await(time.monotonic() + self._profile.interrupt_timeout_s, None)
        if result == "ready":
            self._log.info("CLI interrupted; prompt is back", extra={"pid": self.pid})
            return
        self._kill("no prompt after an interrupt")

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
        status = self._reap()
        self._log.warning(
            "CLI exited during a task", extra={"exit_status": status, "profile": self._profile.name}
        )
        outcome = TaskOutcome("crashed", self._tail.text(), status, time.monotonic() - started, approvals)
        self._discard()
        return outcome

    def _outcome(self, kind: OutcomeKind, started: float, approvals: int) -> TaskOutcome:
        self._log.info("task ended", extra={"outcome": kind, "approvals": approvals})
        return TaskOutcome(kind, self._tail.text(), None, time.monotonic() - started, approvals)
