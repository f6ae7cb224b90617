"""A profile made only of configuration drives a program this project did not write: Python's REPL.

The REPL reads its lines through GNU readline (imported explicitly: ``-I`` would leave it out), which puts
the terminal in raw mode while it reads — the signal the driver waits for before it types (``raw_input``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.profiles import generic_profile
from ec2_agent.sessions import TerminalSession


@pytest.fixture
def repl(tmp_path: Path) -> Iterator[TerminalSession]:
    profile = generic_profile(
        {
            "name": "python-repl",
            "command": [sys.executable, "-I", "-q", "-i", "-c", "import readline"],
            "ready_pattern": r"(?m)^>>> \Z",
            "quit_command": "exit()",
            "raw_input": True,
            "interrupt_timeout_s": 3,
            "startup_timeout_s": 10,
        }
    )
    cli = TerminalSession(profile, tmp_path)
    cli.start()
    yield cli
    cli.close()


def test_runs_a_line_and_sees_the_prompt_return(repl: TerminalSession) -> None:
    outcome = repl.run_task("print(6 * 7)", timeout_s=10)
    assert outcome.kind == "completed"
    assert "\n42\n" in outcome.output_tail


def test_timeout_interrupts_and_keeps_the_session(repl: TerminalSession) -> None:
    """Short sleeps in a loop, not one `time.sleep(60)`: CPython runs its signal handlers between bytecodes
    and when a sleep is interrupted, so a Ctrl-C that lands after the statement's last check and before the
    sleep starts (the interrupt is sent as soon as readline hands the terminal back) is only acted on after
    the whole sleep: 1 run in ~15 here was killed instead. A loop acts on it within one short sleep."""
    pid = repl.pid
    outcome = repl.run_task("import time; [time.sleep(0.05) for _ in range(1200)]", timeout_s=0.3)
    assert outcome.kind == "timed_out"
    assert "KeyboardInterrupt" in outcome.output_tail
    assert repl.alive and repl.pid == pid
    assert repl.run_task("print('still here')", timeout_s=10).kind == "completed"


def test_exit_is_crashed_with_status(repl: TerminalSession) -> None:
    outcome = repl.run_task("import os; os._exit(5)", timeout_s=10)
    assert (outcome.kind, outcome.exit_status) == ("crashed", 5)
    repl.restart()
    assert repl.run_task("1 + 1", timeout_s=10).kind == "completed"
