"""The kiro-headless profile, with the emulator standing in for kiro-cli."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.profiles import CliProfile, builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import HeadlessSession, SessionError
from tests.session.support import WORK_S, write_task


@pytest.fixture
def headless(workdir: Path, kiro_command: str) -> Iterator[HeadlessSession]:
    data = builtin_profile("kiro-headless", kiro_command=kiro_command).model_dump()
    data.update(kill_grace_s=1, env={"KIRO_EMULATOR_WORK_S": WORK_S})
    cli = HeadlessSession(CliProfile.model_validate(data), workdir)
    cli.start()
    yield cli
    cli.close()


def test_exit_status_zero_is_completed(headless: HeadlessSession, workdir: Path) -> None:
    outcome = headless.run_task(task_prompt(), timeout_s=10)
    assert (outcome.kind, outcome.exit_status, outcome.approvals) == ("completed", 0, 0), outcome
    assert "fs_write is trusted" in outcome.output_tail
    assert (workdir / "docs" / "add-export-button.md").is_file()
    assert headless.alive and headless.pid is None  # one process per task, gone afterwards


def test_nonzero_exit_is_failed_with_the_documented_reason(headless: HeadlessSession, workdir: Path) -> None:
    write_task(workdir, directive="crash")
    outcome = headless.run_task(task_prompt(), timeout_s=10)
    assert (outcome.kind, outcome.exit_status) == ("failed", 3)
    assert outcome.reason == "the CLI exited with status 3 (an MCP server failed to start)"
    assert headless.alive  # the next task starts a fresh process


def test_deadline_kills_the_process_group(headless: HeadlessSession, workdir: Path) -> None:
    write_task(workdir, directive="wedge")
    outcome = headless.run_task(task_prompt(), timeout_s=0.5)
    assert outcome.kind == "timed_out"
    assert outcome.duration_s < 5
    assert headless.pid is None


def test_cancel(headless: HeadlessSession, workdir: Path) -> None:
    write_task(workdir, directive="hang")
    cancel = threading.Event()
    cancel.set()
    assert headless.run_task(task_prompt(), timeout_s=10, cancel=cancel).kind == "cancelled"


def test_needs_start_and_a_runnable_command(workdir: Path) -> None:
    cli = HeadlessSession(builtin_profile("kiro-headless", kiro_command="/nonexistent/kiro-cli"), workdir)
    with pytest.raises(SessionError, match="not started"):
        cli.run_task(task_prompt(), timeout_s=1)
    cli.start()
    with pytest.raises(SessionError, match="cannot run"):
        cli.run_task(task_prompt(), timeout_s=1)
    cli.close()
    assert not cli.alive
