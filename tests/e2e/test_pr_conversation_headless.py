"""The PR conversation resumed by a headless CLI's resume flag: Claude Code (npm
``@anthropic-ai/claude-code``, pinned in aipm/local/clis.toml) as ``claude -p`` in the agent's sandbox,
against the model stand-in, through the whole local stack. The first job of a PR saves its conversation
(``--session-id``, the files under the profile's ``session_state``) beside the PR record; its agent stops,
and a follow-up on a new agent with a work dir of its own puts them back and continues the conversation
(``--resume``): the stand-in's request log shows the first job's turns in the follow-up's requests. A saved
session the CLI cannot find falls back to a new session with the brief. (The same checks with an ACP CLI:
tests/e2e/test_pr_conversation_acp.py.)"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator

import pytest

from aipm.local.clis import install
from aipm.local.model_standin import Faults
from aipm.local.model_standin.script import render_change
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from lambda_src.records.models import SavedSession
from tests.e2e.real_cli_stack import delegate, git, task
from tests.e2e.test_pr_conversation_acp import (
    REPO,
    REVIEWER,
    as_reviewer,
    ended,
    follow_up_job,
    record_follow_ups,
)
from tests.e2e.waiting import eventually
from tests.session.test_real_headless import said_by_claude

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROFILE = "claude-headless"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    install()  # the pinned CLIs (cached after the first run)
    options = StackOptions(cli_profile=PROFILE, pool_size=1, sweep_interval_s=2, job_timeout_s=60)
    with LocalStack(tmp_path_factory.mktemp("headless-conversation"), options) as s:
        s.forge.add_user(*REVIEWER)
        s.forge.add_collaborator(DEMO_OWNER, DEMO_REPO, REVIEWER[0])
        yield s


def saved_by(stack: LocalStack, number: int, job_id: str) -> SavedSession:
    """The PR's saved session once the job `job_id` has saved it (polled)."""

    def find() -> list[SavedSession]:
        saved = stack.store().get_saved_session(DEMO_OWNER, DEMO_REPO, number, PROFILE)
        return [saved] if saved is not None and saved.job_id == job_id else []

    found = eventually(find)
    assert found, f"job {job_id} did not save the PR's session"
    return found[0]


def test_a_follow_up_on_another_host_resumes_the_pr_s_claude_session(stack: LocalStack) -> None:
    """Runs first: it replaces the module's agent, on whose successor the next test runs too."""
    standin = stack.standin
    assert standin is not None
    delegated = delegate(stack, task("Add the Platypus log"))
    assert wait_for_job(stack, delegated["jobId"], timeout_s=120)["status"] == "completed"
    branch, number = delegated["branchName"], delegated["number"]
    first_path, _ = render_change(git(stack, "show", f"{branch}:TASK.md"))
    saved = saved_by(stack, number, delegated["jobId"])
    assert str(uuid.UUID(saved.session_id)) == saved.session_id and saved.state
    old = stack.agents[0]
    assert old.proc is not None
    old.proc.send_signal(signal.SIGTERM)
    old.proc.wait(timeout=60)
    stack.start_agent(2)
    mark = standin.last_seq()

    ask = {"body": "@aipm please also write the Wombat notes"}
    as_reviewer(stack, f"{REPO}/issues/{number}/comments", ask)
    job = ended(stack, follow_up_job(stack, number))

    assert job.status.value == "completed", (job.reason, job.output_tail)
    assert job.changed_files and job.changed_files[0] != first_path
    new_host_log = stack.agents[-1].log_path.read_text()
    assert any(
        '"resumed the PR\'s session"' in line and job.job_id in line for line in new_host_log.splitlines()
    ), "the follow-up did not resume on the new agent"
    generating = [e.detail for e in job.timeline if e.step == "generating"]
    assert f"resumed the PR's session {saved.session_id}" in generating[-1], job.timeline
    answer = f"I wrote {first_path} as TASK.md asks."
    resumed = [r for r in standin.requests_since(mark) if said_by_claude(r.text, answer)]
    assert resumed, "the follow-up's model requests do not carry the first job's conversation"
    assert any("Wombat notes" in r.text and "Follow-up request" in r.text for r in resumed)
    again = saved_by(stack, number, job.job_id)  # the follow-up's turns are kept too, under the same id
    assert again.session_id == saved.session_id

    # A second follow-up resumes the same conversation again, now holding both jobs' turns.
    mark = standin.last_seq()
    ask = {"body": "@aipm mention the Echidna here", "path": "README.md", "line": 1}
    as_reviewer(stack, f"{REPO}/pulls/{number}/comments", ask)
    assert eventually(lambda: record_follow_ups(stack, number)[1:]), "no second follow-up job was queued"
    second = ended(stack, record_follow_ups(stack, number)[-1])
    assert second.status.value == "completed", (second.reason, second.output_tail)
    assert second.changed_files == ["README.md"]
    generating = [e.detail for e in second.timeline if e.step == "generating"]
    assert f"resumed the PR's session {saved.session_id}" in generating[-1], second.timeline
    follow_up_answer = f"I wrote {job.changed_files[0]} as TASK.md asks."  # the first follow-up's last word
    requests = standin.requests_since(mark)
    both = [r for r in requests if all(said_by_claude(r.text, a) for a in (answer, follow_up_answer))]
    assert both, "the second follow-up's model requests do not carry both earlier jobs' conversation"


def test_a_saved_session_the_cli_cannot_find_falls_back_to_a_new_session_with_the_brief(
    stack: LocalStack,
) -> None:
    """The PR's saved session names a conversation its files do not hold: Claude Code refuses the resume
    ("No conversation found with session ID"), and the turn runs again in a new session, with the brief."""
    standin = stack.standin
    assert standin is not None
    delegated = delegate(stack, task("Add the Quoll map"))
    assert wait_for_job(stack, delegated["jobId"], timeout_s=120)["status"] == "completed"
    branch, number = delegated["branchName"], delegated["number"]
    first_path, _ = render_change(git(stack, "show", f"{branch}:TASK.md"))
    saved = saved_by(stack, number, delegated["jobId"])
    missing = str(uuid.uuid4())
    stack.store().put_saved_session(
        DEMO_OWNER, DEMO_REPO, number, saved.model_copy(update={"session_id": missing})
    )
    mark = standin.last_seq()

    ask = {"body": "@aipm please also write the Dingo notes"}
    as_reviewer(stack, f"{REPO}/issues/{number}/comments", ask)
    job = ended(stack, follow_up_job(stack, number))

    assert job.status.value == "completed", (job.reason, job.output_tail)
    generating = [e.detail for e in job.timeline if e.step == "generating"]
    assert any(f"resumed the PR's session {missing}" in d for d in generating), job.timeline
    assert any(f"{missing} could not be resumed" in d for d in generating), job.timeline
    requests = standin.requests_since(mark)
    briefed = [r for r in requests if "Dingo notes" in r.text and "Follow-up request" in r.text]
    assert briefed, "the follow-up's CLI never sent the brief to the model"
    assert not [r for r in requests if said_by_claude(r.text, f"I wrote {first_path} as TASK.md asks.")]
    again = saved_by(stack, number, job.job_id)  # the new session is the PR's from now on
    assert again.session_id not in (missing, saved.session_id)


def test_a_resumed_turn_that_fails_forgets_the_saved_session(stack: LocalStack) -> None:
    """A saved conversation that makes the resumed turn fail (here the model service answers 400 to it)
    would fail every later follow-up of the PR the same way: it is forgotten, and the next follow-up starts
    a new session with the brief."""
    standin = stack.standin
    assert standin is not None
    delegated = delegate(stack, task("Add the Bandicoot list"))
    assert wait_for_job(stack, delegated["jobId"], timeout_s=120)["status"] == "completed"
    number = delegated["number"]
    saved = saved_by(stack, number, delegated["jobId"])

    standin.set_faults(Faults(error_status=400))
    try:
        as_reviewer(stack, f"{REPO}/issues/{number}/comments", {"body": "@aipm please add the Bilby list"})
        failed = ended(stack, follow_up_job(stack, number))
    finally:
        standin.set_faults(Faults())

    assert failed.status.value == "failed", (failed.reason, failed.output_tail)
    generating = [e.detail for e in failed.timeline if e.step == "generating"]
    assert any(f"resumed the PR's session {saved.session_id}" in d for d in generating), failed.timeline
    assert any(f"{saved.session_id} is forgotten" in d for d in generating), failed.timeline
    assert stack.store().get_saved_session(DEMO_OWNER, DEMO_REPO, number, PROFILE) is None

    mark = standin.last_seq()
    as_reviewer(stack, f"{REPO}/issues/{number}/comments", {"body": "@aipm please add the Kowari list"})
    assert eventually(lambda: record_follow_ups(stack, number)[1:]), "no second follow-up job was queued"
    job = ended(stack, record_follow_ups(stack, number)[-1])
    assert job.status.value == "completed", (job.reason, job.output_tail)
    assert not any("resumed" in e.detail for e in job.timeline if e.step == "generating"), job.timeline
    requests = standin.requests_since(mark)
    assert any("Kowari list" in r.text and "Follow-up request" in r.text for r in requests)


def test_a_session_saved_with_a_commit_the_branch_no_longer_holds_is_forgotten(stack: LocalStack) -> None:
    """Someone force-pushes the PR's branch back past the agent's commit: the saved conversation describes
    work that is gone, so the follow-up does not resume it (the timeline says why); its own session is the
    PR's from then on."""
    standin = stack.standin
    assert standin is not None
    delegated = delegate(stack, task("Add the Numbat census"))
    assert wait_for_job(stack, delegated["jobId"], timeout_s=120)["status"] == "completed"
    branch, number = delegated["branchName"], delegated["number"]
    first_path, _ = render_change(git(stack, "show", f"{branch}:TASK.md"))
    saved = saved_by(stack, number, delegated["jobId"])
    assert saved.commit_sha == git(stack, "rev-parse", branch).strip()
    git(stack, "update-ref", f"refs/heads/{branch}", f"{branch}~1")  # back to the TASK.md commit
    mark = standin.last_seq()

    as_reviewer(stack, f"{REPO}/issues/{number}/comments", {"body": "@aipm please add the Numbat count"})
    job = ended(stack, follow_up_job(stack, number))

    assert job.status.value == "completed", (job.reason, job.output_tail)
    preparing = [e.detail for e in job.timeline if e.step == "preparing"]
    assert any(
        f"{saved.session_id} is forgotten: the branch no longer holds {saved.commit_sha[:12]}" in d
        for d in preparing
    ), job.timeline
    assert not any("resumed" in e.detail for e in job.timeline if e.step == "generating"), job.timeline
    requests = standin.requests_since(mark)
    assert any("Numbat count" in r.text and "Follow-up request" in r.text for r in requests)
    assert not [r for r in requests if said_by_claude(r.text, f"I wrote {first_path} as TASK.md asks.")]
    again = saved_by(stack, number, job.job_id)
    assert again.session_id != saved.session_id and again.commit_sha == job.commit_sha


def test_a_conversation_over_the_saving_limit_is_forgotten_not_resumed_stale(stack: LocalStack) -> None:
    """A follow-up whose conversation outgrew AIPM_SAVED_SESSION_MAX_BYTES cannot be kept; the PR's older
    saved session then no longer matches the branch, so it is forgotten once the follow-up's commit is
    pushed (the timeline says so), and the next follow-up starts a new session with the brief."""
    delegated = delegate(stack, task("Add the Wallaby table"))
    assert wait_for_job(stack, delegated["jobId"], timeout_s=120)["status"] == "completed"
    number = delegated["number"]
    saved_by(stack, number, delegated["jobId"])
    agent = stack.agents[-1]
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(timeout=60)
    agent.env["AIPM_SAVED_SESSION_MAX_BYTES"] = "2000"  # a saved Claude conversation is ~43 kB gzipped
    stack.start_agent(agent.index)

    as_reviewer(stack, f"{REPO}/issues/{number}/comments", {"body": "@aipm please add the Wallaroo row"})
    job = ended(stack, follow_up_job(stack, number))

    assert job.status.value == "completed", (job.reason, job.output_tail)
    [pushed] = [e.detail for e in job.timeline if e.step == "pushed"]
    assert "the CLI's session could not be saved" in pushed and "starts a new session" in pushed, pushed
    assert stack.store().get_saved_session(DEMO_OWNER, DEMO_REPO, number, PROFILE) is None
