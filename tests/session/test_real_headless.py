"""Real CLIs in headless mode — Claude Code (``claude -p``), Codex (``codex exec``), Gemini CLI (``gemini
-p``), Qwen Code (``qwen -p``) from npm and aider (``aider --message``) from PyPI, pinned in
aipm/local/clis.toml — each run by the headless driver through its built-in profile against the loopback
model stand-in: one process per task makes the real change through the CLI's own tools (aider: its whole-
file edit), a model error fails the task with the reason, and a model that never answers ends in the timeout
with nothing left running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import standin_profile
from aipm.local.model_standin.script import render_change
from ec2_agent.profiles import builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sandbox import pack_home_paths, unpack_home_paths
from ec2_agent.sessions import HeadlessSession
from tests.real_cli_fixtures import write_task

pytestmark = pytest.mark.slow
PROFILES = ["claude-headless", "codex-headless", "gemini-headless", "qwen-headless", "aider-headless"]
MakeSession = Callable[[str], HeadlessSession]


@pytest.fixture
def headless(tmp_path: Path, standin: ModelStandin, cli_bin: Path) -> Iterator[MakeSession]:
    made: list[HeadlessSession] = []

    def make(name: str) -> HeadlessSession:
        workdir = tmp_path / "ws"
        workdir.mkdir(exist_ok=True)
        home = tmp_path / "home"
        profile = standin_profile(
            builtin_profile(name), standin.base_url, home, cli_bin.parent, workspace=workdir
        )
        session = HeadlessSession(profile.model_copy(update={"kill_grace_s": 1.0}), workdir)
        made.append(session)
        session.start()
        return session

    yield make
    for session in made:
        session.close()


def processes_in(workdir: Path, settle_s: float = 3.0) -> list[int]:
    """PIDs of processes whose working directory is ``workdir`` (proc(5)) still there after ``settle_s``
    (a process sent SIGKILL is gone once the kernel has delivered it, not at once)."""
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "cwd").readlink() == workdir:
                        found.append(int(entry.name))
                except OSError:
                    continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("name", PROFILES)
def test_the_cli_makes_the_change_through_its_own_tools(
    name: str, headless: MakeSession, standin: ModelStandin
) -> None:
    session = headless(name)
    task = write_task(session.workdir, "Add the Zanzibar report")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", outcome
    path, content = render_change(task)
    assert (session.workdir / path).read_text() == content
    stages = {r.stage for r in standin.requests()}
    assert ({"read", "write", "final"} <= stages) or "whole-file" in stages, stages
    assert sorted(str(p.relative_to(session.workdir)) for p in session.workdir.rglob("*") if p.is_file()) == [
        "TASK.md",
        path,
    ], "the CLI left files of its own in the workspace"


@pytest.mark.parametrize("name", PROFILES)
def test_a_model_error_fails_the_task_with_the_reason(name: str, headless: MakeSession) -> None:
    session = headless(name)
    task = write_task(session.workdir, "Refused", "Do it. <!-- model: error=400 -->")
    outcome = session.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "failed", outcome
    assert outcome.reason, outcome
    assert not (session.workdir / render_change(task)[0]).exists()


@pytest.mark.parametrize("name", PROFILES)
def test_a_model_that_never_answers_times_out_and_leaves_nothing_running(
    name: str, headless: MakeSession
) -> None:
    session = headless(name)
    write_task(session.workdir, "Never ending", "Wait. <!-- model: hang -->")
    started = time.monotonic()
    outcome = session.run_task(task_prompt(), timeout_s=8)
    assert outcome.kind == "timed_out", outcome
    assert time.monotonic() - started < 8 + 3 * 1 + 2
    assert processes_in(session.workdir) == []


def test_claude_resumes_a_saved_conversation_in_another_home(
    tmp_path: Path, standin: ModelStandin, cli_bin: Path
) -> None:
    """A PR's follow-up on another host, with Claude Code headless: the first run saves its conversation
    under the id the session chose (`--session-id`); its `session_state`, packed as the runner packs it, is
    unpacked into a second, fresh home, where `--resume` sends the first task's turns — the model's own
    answer as an assistant turn — before the new prompt, and the stand-in reads the new TASK.md afresh."""
    workdir = tmp_path / "ws"
    workdir.mkdir()
    profile = builtin_profile("claude-headless")
    homes = [tmp_path / "home-1", tmp_path / "home-2"]

    def session(home: Path) -> HeadlessSession:
        made = standin_profile(profile, standin.base_url, home, cli_bin.parent, workspace=workdir)
        started = HeadlessSession(made, workdir)
        started.start()
        return started

    first = session(homes[0])
    task = write_task(workdir, "Add the Platypus log")
    assert first.run_task(task_prompt(), timeout_s=120).kind == "completed"
    saved_id = first.session_id
    assert saved_id is not None
    archive = pack_home_paths(homes[0], profile.session_state, 300_000)
    assert archive is not None
    second = session(homes[1])
    unpack_home_paths(archive, homes[1], profile.session_state, profile.session_state_rename)
    second.resume(saved_id)
    follow_up = write_task(workdir, "Add the Wombat notes")
    mark = standin.last_seq()
    outcome = second.run_task(task_prompt(), timeout_s=120)
    assert outcome.kind == "completed", outcome
    assert second.session_id == saved_id
    answer = f"I wrote {render_change(task)[0]} as TASK.md asks."
    requests = standin.requests_since(mark)
    assert [r.stage for r in requests] == ["read", "write", "final"]  # the new turn, from its start
    assert all(said_by_claude(r.text, answer) for r in requests)
    path, content = render_change(follow_up)
    assert (workdir / path).read_text() == content


def said_by_claude(request_body: str, text: str) -> bool:
    """True if an Anthropic Messages request replays `text` as one of the assistant's own earlier turns."""
    try:
        messages = json.loads(request_body).get("messages", [])
    except ValueError:
        return False
    return any(
        m.get("role") == "assistant"
        and any(isinstance(b, dict) and text in str(b.get("text", "")) for b in m.get("content", []))
        for m in messages
        if isinstance(m, dict)
    )
