"""A coding-agent CLI in headless mode: one process per task, on pipes (no terminal), judged by exit status.

The task prompt is the last argument (``argv + [prompt]``); standard input is empty (``/dev/null``), so a CLI
that would wait for an answer reads end-of-file instead of hanging. Output (stdout and stderr merged) is
read in ``select`` with a deadline, cleaned of control characters and kept as a bounded tail. The process
leads its own session and process group, so a timeout or cancel ends it and everything it started:
SIGINT → SIGTERM → SIGKILL to the group, each followed by up to ``kill_grace_s``.

Exit status 0 is ``completed`` unless the output matches one of the profile's error patterns; any other
status is ``failed`` with the reason (the profile's ``exit_reasons`` name documented codes); death by a
signal the agent did not send is ``crashed``. Shape borrowed from :func:`subprocess.run`'s timeout handling.

A profile with ``session_args`` / ``resume_args`` (a CLI that saves its conversations under an id it is given
and continues one by id, e.g. Claude Code's ``--session-id`` / ``--resume``) makes the session resumable
(:class:`~ec2_agent.sessions.base.ResumableSession`): a job's first turn starts a new conversation under a
fresh UUID (``session_args``), its later turns (the checks' rounds) continue it (``resume_args``), and after
:meth:`HeadlessSession.resume` — the PR's saved session put back in the CLI's home — the first turn continues
the saved one. A turn whose resume the CLI refuses (output matching the profile's ``resume_refused``) runs
again, once, in a new conversation within the same deadline. :meth:`HeadlessSession.reset` forgets the id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import signal
import subprocess
import threading
import time
import uuid
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
        self._conversation: str | None = None  # the job's conversation id (session_args / resume_args)
        self._saved = False  # the CLI has that conversation saved: the next turn resumes it

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

    @property
    def session_id(self) -> str | None:
        """The job's conversation id (a UUID the agent chose, or the resumed one); ``None`` before the first
        turn, after a reset, and always for a profile without ``session_args``."""
        return self._conversation

    @property
    def can_resume(self) -> bool:
        """The profile says how to continue a saved conversation and where the CLI keeps them."""
        return bool(self._profile.resume_args and self._profile.session_state)

    def start(self) -> None:
        """Mark the session usable (nothing runs between tasks). Never raises."""
        self._started = True

    def reset(self) -> None:
        """Forget the conversation id: the next turn starts a new conversation (every task is a new
        process, so nothing else is kept)."""
        self._conversation = None
        self._saved = False

    def resume(self, session_id: str) -> None:
        """Continue the saved conversation ``session_id`` (its files already back in the CLI's home) from the
        next turn on. Raises :class:`SessionError` if the profile cannot resume or the id could pass for a
        flag (it must start with a letter or digit, printable, no spaces); whether the CLI finds the
        conversation shows only when the turn runs (a refusal falls back to a new conversation)."""
        if not self.can_resume:
            raise SessionError(f"{self._profile.name}: the profile cannot resume a saved conversation")
        if not session_id[:1].isalnum() or not session_id.isprintable() or " " in session_id:
            # it becomes its own argv element: never a flag (`--…`), never a control character
            raise SessionError(f"{self._profile.name}: {session_id!r} is not a session id")
        self._conversation = session_id
        self._saved = True

    def task_argv(self, prompt: str) -> list[str]:
        """The command of the next turn: ``argv``, then ``resume_args`` when a conversation is saved (resumed,
        or an earlier turn of this job) or ``session_args`` for a new one (its id chosen now), then
        ``prompt``; ``{session_id}`` replaced by the conversation's id."""
        profile = self._profile
        if not profile.session_args:
            return [*profile.argv, prompt]
        if self._conversation is None:
            self._conversation, self._saved = str(uuid.uuid4()), False
        extra = profile.resume_args if self._saved else profile.session_args
        return [*profile.argv, *(arg.replace("{session_id}", self._conversation) for arg in extra), prompt]

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
        """Run :meth:`task_argv` to its end, at most ``timeout_s`` seconds in all (a refused resume's second
        run included; see the module docstring).

        Raises ``ValueError`` for a prompt that is not one line free of control characters and
        :class:`SessionError` if the session is not started or the command cannot be run.
        """
        if not prompt or strip_control(prompt) != prompt:
            raise ValueError("the prompt must be one non-empty line without control characters")
        if not self._started:
            raise SessionError("the session is not started")
        started = time.monotonic()
        resuming = self._saved
        outcome = self._run(prompt, started, started + timeout_s, cancel, on_prompt_sent)
        if resuming and self._resume_refused(outcome):
            self._log.warning(
                "the CLI refused to resume the saved conversation; a new one",
                extra={"cli_session": self._conversation, "reason": outcome.reason},
            )
            self.reset()
            outcome = self._run(prompt, started, started + timeout_s, cancel, None)
        if self._conversation is not None:
            self._saved = True  # the CLI saves a conversation as soon as it runs a turn in it
        return outcome

    def _resume_refused(self, outcome: TaskOutcome) -> bool:
        pattern = self._profile.resume_refused
        if outcome.kind != "failed" or pattern is None:
            return False
        return re.search(pattern, outcome.output_tail) is not None

    def _run(
        self,
        prompt: str,
        started: float,
        deadline: float,
        cancel: threading.Event | None,
        on_prompt_sent: Callable[[], None] | None,
    ) -> TaskOutcome:
        self._tail.clear()
        argv, env = self._sandbox.command(self.task_argv(prompt), child_environment(self._profile))
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
        ended = self._pump(process, deadline, cancel)
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
