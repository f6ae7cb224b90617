"""Real ACP agents from npm (Gemini CLI ``gemini --acp``, Qwen Code ``qwen --acp``, Codex through
``codex-acp``; pinned in aipm/local/clis.toml) driven by the ACP session against the loopback model
stand-in: each makes the real change through its own tools; a reset leaves the next job nothing of the
previous one (checked in the stand-in's request log); cancel and timeout end the turn; a model error is a
failed task with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import standin_profile
from aipm.local.model_standin.script import render_change
from ec2_agent.profiles import BuiltinProfileName, builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sandbox import pack_home_paths, unpack_home_paths
from ec2_agent.sessions import SessionError
from ec2_agent.sessions.acp import AcpSession
from tests.real_cli_fixtures import cancel_when_the_model_is_waited_for, write_task

pytestmark = pytest.mark.slow
AGENTS: list[BuiltinProfileName] = ["gemini-acp", "qwen-acp", "codex-acp"]
MakeSession = Callable[[BuiltinProfileName], AcpSession]


@pytest.mark.parametrize("name", AGENTS)
def test_two_jobs_in_a_row_with_a_reset_share_nothing(
    name: BuiltinProfileName, acp_session: MakeSession, standin: ModelStandin
) -> None:
    session = acp_session(name)
    workdir = session.workdir
    first = write_task(workdir, "Add the Zanzibar report")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", outcome
    path, content = render_change(first)
    assert (workdir / path).read_text() == content
    assert any(step["kind"] == "tool_call" for step in session.steps)
    assert "[edit] " in outcome.output_tail or path in outcome.output_tail
    first_session = session.session_id
    stages = [r.stage for r in standin.requests()]
    assert "read" in stages and "write" in stages and "final" in stages

    session.reset()
    assert session.session_id != first_session
    mark = standin.last_seq()
    second = write_task(workdir, "Add the Quokka summary")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", outcome
    path2, content2 = render_change(second)
    assert (workdir / path2).read_text() == content2 and not (workdir / path).exists()
    later = standin.requests_since(mark)
    assert later and any("Quokka" in r.text for r in later)
    assert not [r.seq for r in later if "Zanzibar" in r.text], "the second job's CLI saw the first job"


@pytest.mark.parametrize("name", AGENTS)
def test_cancel_mid_turn_stops_the_turn_and_the_slot_goes_on(
    name: BuiltinProfileName, acp_session: MakeSession, standin: ModelStandin
) -> None:
    session = acp_session(name)
    task = write_task(session.workdir, "Slow work", "Take your time. <!-- model: slow=60 -->")
    cancel = cancel_when_the_model_is_waited_for(standin)
    outcome = session.run_task(task_prompt(), timeout_s=120, cancel=cancel)
    assert outcome.kind == "cancelled", outcome
    assert outcome.duration_s < 30
    assert not (session.workdir / render_change(task)[0]).exists()
    if not session.alive:  # the agent did not acknowledge in time: the pool restarts it
        session.restart()
    else:
        session.reset()
    task = write_task(session.workdir, "Quick work")
    assert session.run_task(task_prompt(), timeout_s=120).kind == "completed"
    assert (session.workdir / render_change(task)[0]).exists()


@pytest.mark.parametrize("name", AGENTS)
def test_a_timeout_ends_the_turn(name: BuiltinProfileName, acp_session: MakeSession) -> None:
    session = acp_session(name)
    write_task(session.workdir, "Never ending", "Wait. <!-- model: hang -->")
    started = time.monotonic()
    outcome = session.run_task(task_prompt(), timeout_s=6)
    assert outcome.kind == "timed_out", outcome
    assert time.monotonic() - started < 6 + 5 + 2 * 2 + 1


@pytest.mark.parametrize("name", AGENTS)
def test_a_model_error_is_a_failed_task_with_the_reason(
    name: BuiltinProfileName, acp_session: MakeSession
) -> None:
    session = acp_session(name)
    write_task(session.workdir, "Refused", "Do it. <!-- model: error=400 -->")
    outcome = session.run_task(task_prompt(), timeout_s=90)
    assert outcome.kind == "failed", outcome
    assert "400" in outcome.reason or "trouble responding" in outcome.reason


def test_a_used_up_daily_quota_fails_the_task_at_once(acp_session: MakeSession) -> None:
    """Gemini CLI does not retry Google's daily-quota answer: the task fails with its message. (Qwen Code and
    Claude Code retry a 429 with backoff: for them a used-up quota ends in the job timeout.)"""
    session = acp_session("gemini-acp")
    write_task(session.workdir, "Over quota", "Do it. <!-- model: quota -->")
    outcome = session.run_task(task_prompt(), timeout_s=90)
    assert outcome.kind == "failed", outcome
    assert "quota" in outcome.reason and outcome.duration_s < 30


def test_a_saved_session_is_resumed_by_another_process_with_another_home(
    tmp_path: Path, standin: ModelStandin, cli_bin: Path
) -> None:
    """A PR's follow-up on another host: the first Gemini process's saved sessions (its profile's
    `session_state`, packed as the runner packs them) are unpacked into a second process's fresh home, which
    loads the session (session/load): its next model request replays the first task's conversation."""
    workdir = tmp_path / "ws"
    workdir.mkdir()
    profile = builtin_profile("gemini-acp")
    homes = [tmp_path / "home-1", tmp_path / "home-2"]
    first = AcpSession(standin_profile(profile, standin.base_url, homes[0], cli_bin.parent), workdir)
    first.start()
    try:
        task = write_task(workdir, "Add the Platypus log")
        assert first.run_task(task_prompt(), timeout_s=90).kind == "completed"
        assert first.can_resume and first.session_id is not None
        saved_id = first.session_id
        archive = pack_home_paths(homes[0], profile.session_state, 300_000)
    finally:
        first.close()
    assert archive is not None
    second = AcpSession(standin_profile(profile, standin.base_url, homes[1], cli_bin.parent), workdir)
    second.start()
    try:
        unpack_home_paths(archive, homes[1], profile.session_state, profile.session_state_rename)
        mark = standin.last_seq()
        second.resume(saved_id)
        assert second.session_id == saved_id
        write_task(workdir, "Add the Wombat notes")
        assert second.run_task(task_prompt(), timeout_s=90).kind == "completed"
    finally:
        second.close()
    path, _ = render_change(task)
    replayed = [r for r in standin.requests_since(mark) if f"I wrote {path} as TASK.md asks." in r.text]
    assert replayed, "the resumed session's model requests do not carry the first task's conversation"


def test_resuming_an_unknown_session_fails_and_leaves_a_new_one(acp_session: MakeSession) -> None:
    session = acp_session("gemini-acp")
    before = session.session_id
    with pytest.raises(SessionError, match="session/load"):
        session.resume("00000000-0000-4000-8000-000000000000")
    assert session.alive and session.session_id not in (None, before)
