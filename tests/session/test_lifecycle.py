"""A state machine over the session lifecycle: start, run, reset, interrupt, crash, restart, close."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import SessionError, TerminalSession
from tests.session.support import emulator_profile, write_task


class SessionLifecycle(RuleBasedStateMachine):
    """The session's observable state follows a simple model of the emulator."""

    def __init__(self) -> None:
        super().__init__()
        self.workdir = Path(tempfile.mkdtemp(prefix="lifecycle-"))
        self.cli = TerminalSession(emulator_profile(interrupt_timeout_s=2), self.workdir)
        self.cli.start()
        self.running = True
        self.conversation = 0  # messages the emulator remembers
        self.restarts = 0

    def _task(self, directive: str | None, timeout_s: float) -> str:
        write_task(self.workdir, directive=directive)
        outcome = self.cli.run_task(task_prompt(), timeout_s=timeout_s)
        if outcome.kind != "crashed":
            self.conversation += 1
            found = re.search(r"Context: (\d+) message", outcome.output_tail)
            assert found and int(found.group(1)) == self.conversation, outcome.output_tail
        return outcome.kind

    @precondition(lambda self: self.running)
    @rule()
    def run(self) -> None:
        assert self._task(None, 10) == "completed"

    @precondition(lambda self: self.running)
    @rule()
    def interrupt(self) -> None:
        assert self._task("hang", 1.5) == "timed_out"  # long enough for the prompt to be typed and sent

    @precondition(lambda self: self.running)
    @rule()
    def crash(self) -> None:
        assert self._task("crash", 10) == "crashed"
        self.running = False

    @precondition(lambda self: self.running)
    @rule()
    def reset(self) -> None:
        self.cli.reset()
        self.conversation = 0

    @precondition(lambda self: not self.running)
    @rule()
    def refused_when_stopped(self) -> None:
        with pytest.raises(SessionError):
            self.cli.run_task(task_prompt(), timeout_s=1)

    @rule()
    def restart(self) -> None:
        self.cli.restart()
        self.running, self.conversation = True, 0
        self.restarts += 1

    @rule()
    def close(self) -> None:
        self.cli.close()
        self.running = False

    @invariant()
    def observable_state_matches(self) -> None:
        assert self.cli.alive == self.running
        assert (self.cli.pid is not None) == self.running
        assert self.cli.restarts == self.restarts

    def teardown(self) -> None:
        self.cli.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


SessionLifecycle.TestCase.settings = settings(
    max_examples=4,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_session_lifecycle = SessionLifecycle.TestCase
