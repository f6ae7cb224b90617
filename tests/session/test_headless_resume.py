"""A headless profile's session flags (``session_args`` / ``resume_args`` / ``resume_refused``): the argv of
each turn, a job's later turns continuing its conversation, a PR's saved conversation resumed, a refused
resume run again in a new conversation, and the profile model's checks.

The CLI here is a small Python program that keeps conversations as Claude Code 2.1.332 was seen to (the
claude-headless profile's comment): ``--session-id <id>`` saves the run under that id, ``--resume <id>`` needs
it saved and otherwise prints "No conversation found with session ID: <id>" and exits 1. The real Claude Code
is run by tests/session/test_real_headless.py and tests/e2e/test_pr_conversation_headless.py."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ec2_agent.profiles import CliProfile, builtin_profile, generic_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import HeadlessSession, ResumableSession, SessionError

CLI = """
import json, pathlib, sys
args = sys.argv[1:]
store = pathlib.Path("conversations")
store.mkdir(exist_ok=True)
with open("argv.jsonl", "a") as log:
    log.write(json.dumps(args) + "\\n")
if "--resume" in args:
    ident = args[args.index("--resume") + 1]
    if not (store / ident).exists():
        print(f"No conversation found with session ID: {ident}", file=sys.stderr)
        sys.exit(1)
else:
    ident = args[args.index("--session-id") + 1]
with open(store / ident, "a") as saved:
    saved.write(args[-1] + "\\n")
print("done")
"""

SESSION_FLAGS: dict[str, Any] = {
    "session_args": ["--session-id", "{session_id}"],
    "resume_args": ["--resume", "{session_id}"],
    "resume_refused": "No conversation found with session ID",
    "home_restore": [".fake"],
    "session_state": [".fake/conversations"],
}


def profile(**update: Any) -> CliProfile:
    settings: dict[str, Any] = {
        "name": "fake-headless",
        "kind": "headless",
        "argv": [sys.executable, "-c", CLI, "-p"],
        **SESSION_FLAGS,
    }
    return generic_profile(settings | update)


def turns(workdir: Path) -> list[list[str]]:
    """The arguments of each run, the command's own first ones and the prompt left out."""
    lines = (workdir / "argv.jsonl").read_text().splitlines()
    return [json.loads(line)[1:-1] for line in lines]


@pytest.fixture
def session(tmp_path: Path) -> HeadlessSession:
    cli = HeadlessSession(profile(), tmp_path)
    cli.start()
    return cli


def test_a_job_starts_a_new_conversation_and_its_later_turns_continue_it(
    session: HeadlessSession, tmp_path: Path
) -> None:
    assert isinstance(session, ResumableSession) and session.can_resume
    assert session.session_id is None
    assert session.run_task(task_prompt(), timeout_s=30).kind == "completed"
    first = session.session_id
    assert first is not None and str(uuid.UUID(first)) == first
    assert session.run_task(task_prompt(), timeout_s=30).kind == "completed"  # e.g. a checks round
    assert session.session_id == first
    session.reset()  # the next job
    assert session.session_id is None
    assert session.run_task(task_prompt(), timeout_s=30).kind == "completed"
    second = session.session_id
    assert second not in (None, first)
    assert turns(tmp_path) == [["--session-id", first], ["--resume", first], ["--session-id", second]]


def test_a_resumed_conversation_is_continued_from_the_first_turn(
    session: HeadlessSession, tmp_path: Path
) -> None:
    saved = str(uuid.uuid4())
    (tmp_path / "conversations").mkdir()
    (tmp_path / "conversations" / saved).write_text("the first job\n")
    session.resume(saved)
    assert session.session_id == saved
    assert session.task_argv("go")[-3:] == ["--resume", saved, "go"]
    outcome = session.run_task(task_prompt(), timeout_s=30)
    assert outcome.kind == "completed", outcome
    assert session.session_id == saved
    assert turns(tmp_path) == [["--resume", saved]]
    assert (tmp_path / "conversations" / saved).read_text() == f"the first job\n{task_prompt()}\n"


def test_a_refused_resume_runs_the_turn_again_in_a_new_conversation(
    session: HeadlessSession, tmp_path: Path
) -> None:
    missing = str(uuid.uuid4())
    session.resume(missing)
    outcome = session.run_task(task_prompt(), timeout_s=30)
    assert outcome.kind == "completed", outcome
    assert "No conversation found" not in outcome.output_tail  # the tail is the second run's
    fresh = session.session_id
    assert fresh not in (None, missing)
    assert turns(tmp_path) == [["--resume", missing], ["--session-id", fresh]]


def test_without_resume_refused_a_failed_resume_is_the_turn_s_failure(tmp_path: Path) -> None:
    cli = HeadlessSession(profile(resume_refused=None), tmp_path)
    cli.start()
    cli.resume(str(uuid.uuid4()))
    outcome = cli.run_task(task_prompt(), timeout_s=30)
    assert (outcome.kind, outcome.exit_status) == ("failed", 1)
    assert len(turns(tmp_path)) == 1


@pytest.mark.parametrize("bad", ["--mcp-config", "-x", "", "a b", "a\nb", "a\x00b"])
def test_an_id_that_could_pass_for_a_flag_is_not_resumed(session: HeadlessSession, bad: str) -> None:
    with pytest.raises(SessionError, match="is not a session id"):
        session.resume(bad)
    assert session.session_id is None


def test_a_profile_without_session_flags_runs_argv_and_the_prompt_and_cannot_resume(tmp_path: Path) -> None:
    plain = {key: None if key == "resume_refused" else () for key in SESSION_FLAGS}
    cli = HeadlessSession(profile(**plain), tmp_path)
    assert cli.task_argv("go") == [sys.executable, "-c", CLI, "-p", "go"]
    assert not cli.can_resume and cli.session_id is None
    with pytest.raises(SessionError, match="cannot resume"):
        cli.resume(str(uuid.uuid4()))


def test_claude_headless_resumes_with_its_own_flags(tmp_path: Path) -> None:
    cli = HeadlessSession(builtin_profile("claude-headless"), tmp_path)
    assert cli.can_resume
    first = cli.task_argv("go")
    ident = cli.session_id
    assert ident is not None
    assert first == [
        "claude", "--dangerously-skip-permissions", "--output-format", "text", "-p",
        "--session-id", ident, "go",
    ]  # fmt: skip
    cli.resume("1b4e28ba-2fa1-41d2-883f-0016d3cca427")
    assert cli.task_argv("go")[-3:] == ["--resume", "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "go"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"session_args": ["--session-id"]}, "placeholder {session_id} exactly once"),
        ({"resume_args": ["--resume", "{session_id}", "{session_id}"]}, "exactly once"),
        ({"resume_args": ["--resume", "{id}"]}, "exactly once and no other"),
        ({"session_args": ["--session-id", "{session_id}", "{home}"]}, "no other"),
        ({"session_args": ["", "{session_id}"]}, "non-empty"),
        ({"resume_args": ()}, "go together"),
        ({"session_args": (), "resume_args": (), "resume_refused": None}, "session_state goes with"),
        ({"session_args": (), "resume_args": (), "session_state": ()}, "resume_refused goes with"),
        ({"resume_refused": "("}, "regular expression"),
        ({"kind": "terminal", "ready_pattern": ">"}, "go with kind 'headless'"),
        ({"session_state": [".other/conversations"]}, "inside a home_restore path"),
        ({"session_state": ["../conversations"]}, "inside the home"),
    ],
)
def test_session_flags_are_checked(update: dict[str, Any], message: str) -> None:
    """Each flag list names the conversation once (and nothing else the agent would have to fill in); the
    two go together, with a headless profile, and the saved sessions stay inside the home's restored paths."""
    with pytest.raises(ValueError, match=message):
        profile(**update)
