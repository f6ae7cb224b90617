"""Real full-screen CLIs from npm (Gemini CLI, Claude Code, Codex, Qwen Code; pinned in aipm/local/clis.toml)
driven by the terminal driver — the same screen-judging code path as every terminal profile — against the
loopback model stand-in: each makes the real change through its own tools; a reset leaves the next task
nothing of the previous one (checked in the stand-in's request log); cancel and timeout end the turn."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import standin_profile
from aipm.local.model_standin.script import render_change
from ec2_agent.profiles import builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import TerminalSession
from tests.real_cli_fixtures import cancel_when_the_model_is_waited_for, write_task

pytestmark = pytest.mark.slow
CLIS = ["gemini-terminal", "claude-terminal", "codex-terminal", "qwen-terminal"]
MakeSession = Callable[[str], TerminalSession]


@pytest.fixture
def terminal_session(tmp_path: Path, standin: ModelStandin, cli_bin: Path) -> Iterator[MakeSession]:
    made: list[TerminalSession] = []

    def make(name: str) -> TerminalSession:
        workdir = tmp_path / "ws"
        workdir.mkdir(exist_ok=True)
        home = tmp_path / "home"
        profile = standin_profile(
            builtin_profile(name), standin.base_url, home, cli_bin.parent, workspace=workdir
        )
        session = TerminalSession(profile, workdir)
        made.append(session)
        session.start()
        return session

    yield make
    for session in made:
        session.close()


@pytest.mark.parametrize("name", CLIS)
def test_two_tasks_in_a_row_with_a_reset_share_nothing(
    name: str, terminal_session: MakeSession, standin: ModelStandin
) -> None:
    session = terminal_session(name)
    workdir = session.workdir
    first = write_task(workdir, "Add the Zanzibar report")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", (outcome, session.screen.text())
    path, content = render_change(first)
    assert (workdir / path).read_text() == content
    stages = [r.stage for r in standin.requests()]
    assert "read" in stages and "write" in stages and "final" in stages

    session.reset()
    mark = standin.last_seq()
    second = write_task(workdir, "Add the Quokka summary")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", (outcome, session.screen.text())
    path2, content2 = render_change(second)
    assert (workdir / path2).read_text() == content2 and not (workdir / path).exists()
    later = standin.requests_since(mark)
    assert later and any("Quokka" in r.text for r in later)
    assert not [r.seq for r in later if "Zanzibar" in r.text], "the second task's CLI saw the first task"
    assert session.restarts == 0  # the same CLI process did both


@pytest.mark.parametrize("name", CLIS)
def test_cancel_mid_turn_stops_the_turn_and_the_session_goes_on(
    name: str, terminal_session: MakeSession, standin: ModelStandin
) -> None:
    session = terminal_session(name)
    task = write_task(session.workdir, "Slow work", "Take your time. <!-- model: slow=60 -->")
    cancel = cancel_when_the_model_is_waited_for(standin)
    outcome = session.run_task(task_prompt(), timeout_s=120, cancel=cancel)
    assert outcome.kind == "cancelled", outcome
    assert outcome.duration_s < 30
    assert not (session.workdir / render_change(task)[0]).exists()
    if not session.alive:  # the CLI did not come back to its prompt in time: the slot restarts it
        session.restart()
    else:
        session.reset()
    task = write_task(session.workdir, "Quick work")
    assert session.run_task(task_prompt(), timeout_s=120).kind == "completed"
    assert (session.workdir / render_change(task)[0]).exists()


@pytest.mark.parametrize("name", CLIS)
def test_a_timeout_ends_the_turn(name: str, terminal_session: MakeSession) -> None:
    session = terminal_session(name)
    write_task(session.workdir, "Never ending", "Wait. <!-- model: hang -->")
    started = time.monotonic()
    outcome = session.run_task(task_prompt(), timeout_s=8)
    assert outcome.kind == "timed_out", outcome
    assert time.monotonic() - started < 8 + 5 + 2 * 2 + 1
