"""Regression tests, through a real pseudo-terminal, for each terminal failure found with the real CLIs.

The program on the other side is ``tests/session/fake_cli.py``: it draws Kiro's prompt with the byte-exact
fixtures in ``tests/session/fixtures/kiro`` (sources in the README there) and reproduces one behaviour per
switch. Every line it receives is logged, so the tests see what reached it, including what must not.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.profiles import CliProfile, builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import SessionStartError, TerminalSession

FAKE_CLI = Path(__file__).resolve().parent / "fake_cli.py"
TIMEOUT_S = 10.0


def kiro_profile(log: Path, *switches: str, **overrides: object) -> CliProfile:
    """The built-in kiro-interactive profile, with the fake CLI as its command."""
    data = builtin_profile("kiro-interactive").model_dump()
    data.update(
        argv=[sys.executable, str(FAKE_CLI), "--log", str(log), *switches],
        startup_timeout_s=10,
        interrupt_timeout_s=2,
        kill_grace_s=1,
        quit_timeout_s=2,
    )
    data.update(overrides)
    return CliProfile.model_validate(data)


def received(log: Path) -> list[str]:
    """Every line the fake CLI received, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "received.jsonl"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[list[TerminalSession]]:
    """Sessions a test opens; all closed afterwards."""
    opened: list[TerminalSession] = []
    yield opened
    for session in opened:
        session.close()


def open_session(sessions: list[TerminalSession], profile: CliProfile, workdir: Path) -> TerminalSession:
    session = TerminalSession(profile, workdir)
    sessions.append(session)
    session.start()
    return session


@pytest.mark.parametrize("switches", [(), ("--usage",)], ids=["prompt", "prompt-with-context-use"])
def test_rustyline_redraw_of_the_prompt_is_ready(
    switches: tuple[str, ...], log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # The prompt ends CR ESC[<col>C: a cleaned byte stream saw "\n" there and never matched the prompt.
    session = open_session(sessions, kiro_profile(log, *switches), tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.reason) == ("completed", "")
    assert received(log) == [task_prompt()]
    assert session.screen.text_to_cursor().endswith("35% > " if switches else "\n> ")


def test_an_answer_waits_until_the_cli_reads_keys_in_raw_mode(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # Kiro prints the approval question in the terminal's normal mode and reads the answer in raw mode
    # only afterwards: "t" + CR typed before that arrives as "t" + LF, which inserts a newline.
    session = open_session(sessions, kiro_profile(log, "--question-delay", "0.6"), tmp_path)
    started = time.monotonic()
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.approvals) == ("completed", 1)
    assert received(log) == [task_prompt(), "t"]
    assert time.monotonic() - started >= 0.6


def test_the_race_is_real_an_answer_typed_in_normal_mode_is_lost(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # A program that draws its prompt before it reads keys: without the raw-mode check the answer goes out
    # as soon as question and prompt show, arrives line-disciplined ("t" + LF), and the turn never ends.
    profile = kiro_profile(log, "--question-delay", "0.6", "--prompt-first", raw_input=False, quiet_s=0.05)
    session = open_session(sessions, profile, tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=3)
    assert (outcome.kind, outcome.approvals) == ("timed_out", 1)
    assert received(log) == [task_prompt()]  # the answer was typed but never submitted


def test_the_raw_mode_check_waits_for_the_program_to_read_keys(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    profile = kiro_profile(log, "--question-delay", "0.6", "--prompt-first")
    session = open_session(sessions, profile, tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.approvals) == ("completed", 1)
    assert received(log) == [task_prompt(), "t"]


def test_an_echoed_approval_question_is_not_answered(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # A task titled like the approval question: the reply quotes it; nothing answers it, no extra turn.
    session = open_session(sessions, kiro_profile(log, "--echo-question"), tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.approvals) == ("completed", 0)
    assert "[y/n/t]:" in outcome.output_tail
    time.sleep(1.5)  # anything sent late would show up in the log now
    session.close()
    assert received(log) == [task_prompt(), "/quit"]


def test_a_question_that_comes_before_any_busy_line_is_answered(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # Gemini CLI against a fast model: its busy line ("esc to cancel") came and went within one read, so
    # the first screen after Enter already asked "Apply this change?". Waiting for the busy line to prove
    # the turn had started left the question unanswered until the job timed out (1 job in 5 here).
    profile = kiro_profile(log, "--question-delay", "0.1", busy_pattern="esc to cancel")
    session = open_session(sessions, profile, tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert (outcome.kind, outcome.approvals) == ("completed", 1), outcome
    assert received(log) == [task_prompt(), "t"]


def test_a_redrawn_question_is_answered_once(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    session = open_session(sessions, kiro_profile(log, "--question-delay", "0.1"), tmp_path)
    for _ in range(2):  # a question per task; each answered exactly once
        outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
        assert (outcome.kind, outcome.approvals) == ("completed", 1)
    assert received(log) == [task_prompt(), "t", task_prompt(), "t"]


def test_the_cursor_position_query_at_start_is_answered(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    # crossterm-based TUIs (Codex) ask ESC[6n at start and exit when nothing answers.
    session = open_session(sessions, kiro_profile(log, "--query-cursor"), tmp_path)
    assert received(log) == ["answered: \x1b[1;1R\x1b[?6c"]
    assert session.run_task(task_prompt(), timeout_s=TIMEOUT_S).kind == "completed"


def test_without_an_answer_the_query_ends_the_program(log: Path, tmp_path: Path) -> None:
    # The fake CLI really depends on the answer: read raw (as a browser terminal would, answering nothing).
    session = TerminalSession(kiro_profile(log, "--query-cursor", startup_timeout_s=8), tmp_path)
    session._spawn(list(session.profile.argv))  # spawned without the screen answering queries
    output = ""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        chunk = session.read_raw(0.2)
        if chunk is None:
            break
        output += chunk
    session.close()
    assert "did not answer the cursor position query" in output


def test_text_then_enter_as_its_own_write(log: Path, tmp_path: Path, sessions: list[TerminalSession]) -> None:
    # Ink-based CLIs (Claude Code, Gemini CLI, Qwen Code) take text and Enter in one write as a paste:
    # Enter becomes a newline. The driver sends Enter once the text shows in the input area.
    profile = kiro_profile(log, "--paste-enter", bracketed_paste=False)
    session = open_session(sessions, profile, tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert outcome.kind == "completed"
    assert received(log) == [task_prompt()]


def test_text_and_enter_in_one_write_is_a_paste_for_such_a_cli(log: Path, tmp_path: Path) -> None:
    # The same program given text and CR in one write (what the old driver sent) does not submit.
    session = TerminalSession(kiro_profile(log, "--paste-enter", bracketed_paste=False), tmp_path)
    session.start()
    try:
        session.write_raw(task_prompt() + "\r")
        time.sleep(1.0)
        assert received(log) == []
    finally:
        session.close()


def test_an_error_at_the_end_of_a_turn_is_failed_with_the_reason(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    session = open_session(sessions, kiro_profile(log, "--error"), tmp_path)
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert outcome.kind == "failed"
    assert outcome.reason == (
        "the model service is having trouble responding: Amazon Q is having trouble responding right now:"
    )
    assert session.alive  # the CLI is back at its prompt: the slot keeps it


def test_an_unclean_screen_before_a_task_restarts_the_cli(
    log: Path, tmp_path: Path, sessions: list[TerminalSession]
) -> None:
    session = open_session(sessions, kiro_profile(log), tmp_path)
    first = session.pid
    session.write_raw("left over from an earlier job")  # typed into the prompt, never submitted
    outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
    assert outcome.kind == "completed"
    assert session.restarts == 1 and session.pid != first
    assert received(log) == [task_prompt()]  # the left-over text never reached the CLI as a line


def test_a_program_that_never_shows_its_prompt_fails_start_with_the_screen(tmp_path: Path) -> None:
    profile = kiro_profile(tmp_path / "log", argv=[sys.executable, "-c", "print('Please log in'); input()"])
    profile = CliProfile.model_validate({**profile.model_dump(), "startup_timeout_s": 1})
    with pytest.raises(SessionStartError, match="no prompt within 1 s; the screen shows: Please log in"):
        TerminalSession(profile, tmp_path).start()
