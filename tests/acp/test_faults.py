"""The ACP driver against a misbehaving agent (fault injection; ``fake_agent.py`` is a real child process
speaking JSON-RPC on real pipes): every fault ends in a typed outcome or error with a clear reason, within
its deadline, and leaves no process behind."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.profiles import AcpSettings, CliProfile
from ec2_agent.sessions import SessionError, SessionStartError, open_session
from ec2_agent.sessions.acp import AcpSession, _descendants

FAKE = Path(__file__).with_name("fake_agent.py")


def profile(behaviour: str, marker: str = "", **fields: object) -> CliProfile:
    settings = {
        "name": f"fake-{behaviour}",
        "kind": "acp",
        "argv": (sys.executable, str(FAKE), behaviour, marker),
        "acp": AcpSettings(),
        "startup_timeout_s": 5,
        "reset_timeout_s": 3,
        "interrupt_timeout_s": 1,
        "kill_grace_s": 0.5,
    }
    settings.update(fields)
    return CliProfile.model_validate(settings)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[list[AcpSession]]:
    """Sessions to close after the test; asserts that nothing they started is left running."""
    made: list[AcpSession] = []
    yield made
    for session in made:
        session.close()
    pids = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
    leftovers = [pid for pid in pids if str(tmp_path) in _cmdline(pid) and _running(pid)]
    assert not leftovers, f"processes left behind: {leftovers}"


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie waits for its new parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start(sessions: list[AcpSession], behaviour: str, workdir: Path, **fields: object) -> AcpSession:
    session = open_session(profile(behaviour, str(workdir), **fields), workdir)
    assert isinstance(session, AcpSession)
    sessions.append(session)
    session.start()
    return session


def test_a_turn_records_plan_tool_calls_permissions_and_edits(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "ok", tmp_path)
    target = tmp_path / "docs" / "x.md"
    seen: list[str] = []
    session._on_output = seen.append
    outcome = session.run_task(f"go write:{target}", timeout_s=10)
    assert outcome.kind == "completed", outcome
    assert outcome.approvals == 1 and target.read_text() == "written by the fake agent\n"
    kinds = [step["kind"] for step in session.steps]
    assert kinds[:2] == ["plan", "tool_call"] and "permission" in kinds and "edit" in kinds
    assert "[permission allowed]" in outcome.output_tail and f"[edit] {target}" in outcome.output_tail
    assert outcome.output_tail.endswith("Done.") and "".join(seen) == outcome.output_tail


def test_a_write_outside_the_workspace_is_refused_and_recorded(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    outside = tmp_path / "outside.txt"
    session = start(sessions, "ok", workspace)
    outcome = session.run_task(f"go write:{outside}", timeout_s=10)
    assert outcome.kind == "completed" and outcome.approvals == 0
    assert not outside.exists()
    assert session.refusals == [f"Write {outside}: {outside} is outside the workspace"]
    assert "[permission refused]" in outcome.output_tail


def test_a_symbolic_link_out_of_the_workspace_is_refused(tmp_path: Path, sessions: list[AcpSession]) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (workspace / "escape").symlink_to(tmp_path / "elsewhere")
    session = start(sessions, "ok", workspace)
    outcome = session.run_task(f"go write:{workspace / 'escape' / 'f.txt'}", timeout_s=10)
    assert outcome.approvals == 0 and not (tmp_path / "elsewhere" / "f.txt").exists()
    assert "outside the workspace" in session.refusals[0]


def test_reset_opens_a_new_session_and_refuses_an_old_id(tmp_path: Path, sessions: list[AcpSession]) -> None:
    session = start(sessions, "ok", tmp_path)
    first = session.session_id
    session.reset()
    assert session.session_id not in (None, first)
    same = start(sessions, "same-session", tmp_path)
    with pytest.raises(SessionError, match="reset not proven"):
        same.reset()
    assert not same.alive


def test_malformed_json_rpc_ends_the_start_with_the_line_quoted(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    started = time.monotonic()
    with pytest.raises(SessionStartError, match=r"malformed JSON-RPC from the agent: b'\{this is not json"):
        start(sessions, "malformed", tmp_path)
    assert time.monotonic() - started < 4
    assert sessions[0].pid is None and not sessions[0].alive


def test_an_agent_that_never_answers_fails_the_start_in_time(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    started = time.monotonic()
    with pytest.raises(SessionStartError, match="no answer to initialize in time"):
        start(sessions, "mute", tmp_path, startup_timeout_s=1.5)
    assert 1.4 < time.monotonic() - started < 4


def test_a_prompt_never_answered_times_out_and_the_agent_is_killed(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "mute-prompt", tmp_path)
    pid = session.pid
    assert pid is not None
    started = time.monotonic()
    outcome = session.run_task("go", timeout_s=1)
    took = time.monotonic() - started
    assert outcome.kind == "timed_out" and "did not stop after session/cancel" in outcome.reason
    assert took < 1 + 1 + 2 * 0.5 + 1
    assert not session.alive and not _running(pid)


def test_cancel_mid_turn_is_acknowledged_and_the_session_survives(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "ok", tmp_path)
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    outcome = session.run_task("go slow", timeout_s=20, cancel=cancel)
    assert outcome.kind == "cancelled" and "acknowledged" in outcome.reason and outcome.duration_s < 3
    assert session.alive
    session.reset()
    assert session.run_task("go", timeout_s=10).kind == "completed"


def test_a_crash_mid_task_is_a_typed_outcome_with_the_exit_status(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "crash", tmp_path)
    outcome = session.run_task("go", timeout_s=10)
    assert outcome.kind == "crashed" and outcome.exit_status == 7 and "status 7" in outcome.reason
    assert not session.alive
    with pytest.raises(SessionError):
        session.run_task("go", timeout_s=1)


def test_an_error_answer_fails_the_task_with_the_agents_reason(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "error-prompt", tmp_path)
    outcome = session.run_task("go", timeout_s=10)
    assert outcome.kind == "failed" and "Quota exceeded for model" in outcome.reason
    assert session.alive


def test_close_kills_a_relaunched_child_that_ignores_sigterm(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    session = start(sessions, "relaunch", tmp_path)
    assert session.pid is not None
    tree = _descendants(session.pid)
    assert len(tree) >= 2  # the relaunched copy and its sleeping child
    assert session.run_task("go", timeout_s=10).kind == "completed"
    session.close()
    assert not [pid for pid in tree if _running(pid)]


def test_a_flood_on_stderr_does_not_block_the_agent(tmp_path: Path, sessions: list[AcpSession]) -> None:
    session = start(sessions, "stderr-flood", tmp_path)
    assert session.alive
    assert len(session._stderr.text().encode()) <= 16 * 1024


def test_a_profile_that_cannot_start_names_the_command(tmp_path: Path, sessions: list[AcpSession]) -> None:
    with pytest.raises(SessionStartError, match="cannot run '/nonexistent/agent'"):
        start(sessions, "ok", tmp_path, argv=("/nonexistent/agent",))


def test_an_unknown_session_mode_is_refused_naming_the_offered_ones(
    tmp_path: Path, sessions: list[AcpSession]
) -> None:
    with pytest.raises(SessionStartError, match=r"no session mode 'ask'"):
        start(sessions, "ok", tmp_path, acp=AcpSettings(mode="ask"))
