"""A PR's saved CLI session is kept without the credentials the CLI was given: the runner passes the values
of the profile's credential variables (here `FAKE_API_KEY`, as `ANTHROPIC_API_KEY` for Claude Code) down to
the save's secret screen, which redacts them by value whatever their shape. The CLI is a shell program in the
real sandbox that logs its key into its saved conversation, raw and base64-encoded, as a careless or hostile
CLI may; the record store is a real moto DynamoDB server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ec2_agent.profiles import generic_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.runner import JobRunner, RunnerConfig, SlotState
from ec2_agent.sandbox import Sandbox, SandboxPolicy, unpack_home_paths
from ec2_agent.sessions import HeadlessSession
from ec2_agent.sessions.base import given_credentials
from lambda_src.records.store import JobStore
from tests.factories import make_job

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY = "opaque-model-service-key-0123456789"  # no token shape: only redaction by value finds it
CLI = """
while [ $# -gt 1 ]; do
  case "$1" in --session-id) id=$2; shift 2;; *) shift;; esac
done
mkdir -p "$HOME/.fake/conversations"
{ echo "key: $FAKE_API_KEY"; printf '%s' "$FAKE_API_KEY" | base64; echo "model: $FAKE_MODEL"; } \
  >> "$HOME/.fake/conversations/$id"
echo done
"""
PROFILE = generic_profile(
    {
        "name": "fake-headless",
        "kind": "headless",
        "argv": ["/bin/sh", "-c", CLI, "sh"],
        "env_allow": ["FAKE_API_KEY", "FAKE_MODEL"],
        "session_args": ["--session-id", "{session_id}"],
        "resume_args": ["--resume", "{session_id}"],
        "home_restore": [".fake"],
        "session_state": [".fake/conversations"],
    }
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(
        tmp_path / "work" / "slots" / "1",
        tmp_path / "work" / "homes" / "cli",
        SandboxPolicy(env_allow=PROFILE.env_allow, network="none"),
    )
    box.start()
    yield box
    box.stop()


def test_only_credential_variables_are_given_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    monkeypatch.setenv("FAKE_MODEL", "model-name-0123")
    assert given_credentials(PROFILE) == (KEY,)
    monkeypatch.delenv("FAKE_API_KEY")
    assert given_credentials(PROFILE) == ()


def test_the_saved_session_is_kept_without_the_key_the_cli_was_given(
    ddb: DynamoDBClient, records_table: str, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    monkeypatch.setenv("FAKE_MODEL", "model-name-0123")
    store = JobStore(records_table, ddb)
    runner = JobRunner(store, github=None, config=RunnerConfig("agent-a", lease_s=60, job_timeout_s=60))  # type: ignore[arg-type]
    job, pr = make_job()
    store.create_delegation(job, pr)
    session = HeadlessSession(PROFILE, sandbox.tree, sandbox=sandbox)
    session.start()
    try:
        assert session.run_task(task_prompt(), timeout_s=30).kind == "completed"
        # Only what _pack_session reads of a slot: its sandbox and its session (no workspace needed).
        slot = SlotState(id=0, workspace=None, sandbox=sandbox, session_factory=None, session=session)  # type: ignore[arg-type]
        save = runner._pack_session(slot, job)
    finally:
        session.close()
    assert save is not None and save.problem is None
    assert runner._keep_session(job, save, "a" * 40) is None  # kept once the commit is pushed
    assert job.pr_number is not None
    saved = store.get_saved_session(job.owner, job.repo_name, job.pr_number, PROFILE.name)
    assert saved is not None and saved.session_id == session.session_id
    unpack_home_paths(saved.state, tmp_path / "restored", PROFILE.session_state)
    [conversation] = (tmp_path / "restored" / ".fake" / "conversations").iterdir()
    kept = conversation.read_text()
    encoded = subprocess.run(["base64"], input=KEY, capture_output=True, text=True, check=True).stdout
    assert KEY not in kept and encoded.strip()[:-4] not in kept
    assert kept.startswith("key: [redacted credential]\n") and kept.count("[redacted credential]") == 2
    assert "model: model-name-0123" in kept  # not a credential: kept as the CLI wrote it
