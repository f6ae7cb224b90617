"""A coding-agent CLI in headless mode: one process per task, on pipes (no terminal), judged by exit status.

The task prompt is the last argument (``argv + [prompt]``); standard input is empty (``/dev/null``), so a CLI
that would wait for an answer reads end-of-file instead of hanging. Output (stdout and stderr merged) is
read in ``select`` with a deadline, cleaned of control characters and kept as a bounded tail. The process
leads its own session and process group, so a timeout or cancel ends it and everything it started:
SIGINT → SIGTERM → SIGKILL to the group, each followed by up to ``kill_grace_s``.

Exit status 0 is ``completed`` unless the output matches one of the profile's error patterns; any other
status is ``failed`` with the reason (the profile's ``exit_reasons`` name documented codes); death by a
signal the agent did not send is ``crashed``. Shape borrowed from :func:`subprocess.run`'s timeout handling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ec2_agent.profiles import CliProfile
from ec2_agent.prompting import TerminalTextStream, strip_control
from ec2_agent.sessions.base import (
    CommandSandbox,
    OutcomeKind,
    SessionError,
    Tail,
    TaskOutcome,
    Unsandboxed,
    child_environment,
)

__all__ = ["HeadlessSession"]

logger = logging.getLogger(__name__)

_TICK_S = 0.2  # longest uninterrupted block in select: how promptly cancel / deadlines are seen
_READ_SIZE = 64 * 1024
_Log = logging.Logger | logging.LoggerAdapter[Any]


class HeadlessSession:
    """Runs each task as ``profile.argv + [prompt]`` in ``workdir`` (see the module docstring)."""

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
        if profile.kind != "headless":
            raise ValueError(f"{profile.name}: a headless session needs a headless profile")
        self._profile = profile
        self._workdir = workdir
        self._tail = Tail(transcript_limit_bytes)
        self._on_output = on_output
        self._log: _Log = log if log is not None else logger
        self._sandbox: CommandSandbox = sandbox if sandbox is not None else Unsandboxed()
        self._started = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def profile(self) -> CliProfile:
        """The profile this session runs."""
        return self._profile

    @property
    def workdir(self) -> Path:
        """The directory each task runs in."""
        return self._workdir

    @property
    def alive(self) -> bool:
        """Started and not closed (each task has its own process)."""
        return self._started

    @property
    def pid(self) -> int | None:
        """The process of the task running now, else ``None``."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Mark the session usable (nothing runs between tasks). Never raises."""
        self._started = True

    def reset(self) -> None:
        """Nothing to forget: every task is a new process."""

    def close(self) -> None:
        """End a running task's process group, if any. Idempotent."""
        self._started = False
        if self._process is not None:
            self._end(self._process)

    def run_task(
        self,
        prompt: str,
        *,
        timeout_s: float,
        cancel: threading.Event | None = None,
        on_prompt_sent: Callable[[], None] | None = None,
    ) -> TaskOutcome:
        """Run ``argv + [prompt]`` to its end, at most ``timeout_s`` seconds (see the module docstring).

        Raises ``ValueError`` for a prompt that is not one line free of control characters and
        :class:`SessionError` if the session is not started or the command cannot be run.
        """
        if not prompt or strip_control(prompt) != prompt:
            raise ValueError("the prompt must be one non-empty line without control characters")
        if not self._started:
            raise SessionError("the session is not started")
        started = time.monotonic()
        self._tail.clear()
        argv, env = self._sandbox.command([*self._profile.argv, prompt], child_environment(self._profile))
        try:
            process = subprocess.Popen(
                argv,
                cwd=self._workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise SessionError(f"{self._profile.name}: cannot run {argv[0]!r}: {exc}") from exc
        self._process = process
        if on_prompt_sent is not None:
            on_prompt_sent()
        ended = self._pump(process, started + timeout_s, cancel)
        if ended != "exited":
            self._end(process)
            kind: OutcomeKind = "cancelled" if ended == "cancelled" else "timed_out"
            return self._outcome(kind, started, None, f"the task was {kind.replace('_', ' ')}")
        status = process.wait()
        self._process = None
        return self._judge(status, started)

    # ----------------------------------------------------------------------------- internals

    def _pump(self, process: subprocess.Popen[bytes], deadline: float, cancel: threading.Event | None) -> str:
        """Read output until end-of-file; ``exited``, ``timeout`` or ``cancelled``."""
        assert process.stdout is not None
        stream = TerminalTextStream()
        fd = process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if cancel is not None and cancel.is_set():
                    return "cancelled"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                if not selector.select(min(_TICK_S, remaining)):
                    continue
                data = os.read(fd, _READ_SIZE)
                if not data:
                    self._record(stream.flush())
                    process.stdout.close()
                    return "exited"
                self._record(stream.feed(data.decode("utf-8", "replace")))

    def _record(self, text: str) -> None:
        if text:
            self._tail.append(text)
            if self._on_output is not None:
                self._on_output(text)

    def _judge(self, status: int, started: float) -> TaskOutcome:
        tail = self._tail.text()
        if status < 0:
            return self._outcome("crashed", started, status, f"the CLI was killed by signal {-status}")
        if status != 0:
            meaning = self._profile.exit_reasons.get(status, "")
            reason = f"the CLI exited with status {status}" + (f" ({meaning})" if meaning else "")
            return self._outcome("failed", started, status, reason)
        error = self._profile.error_in(tail)
        if error is not None:
            return self._outcome("failed", started, status, error)
        return self._outcome("completed", started, status, "")

    def _outcome(self, kind: OutcomeKind, started: float, status: int | None, reason: str) -> TaskOutcome:
        self._log.info(
            "headless task ended", extra={"outcome": kind, "exit_status": status, "reason": reason}
        )
        return TaskOutcome(kind, self._tail.text(), status, time.monotonic() - started, 0, reason)

    def _end(self, process: subprocess.Popen[bytes]) -> None:
        """SIGINT → SIGTERM → SIGKILL to the process group until the leader has exited."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(self._profile.kill_grace_s)
        # The leader may be gone while others in its group live on: end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._process = None
