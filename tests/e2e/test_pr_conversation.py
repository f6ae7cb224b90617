"""The PR conversation, end to end through the local stack: people comment on the forge (their own tokens),
the forge sends GitHub's webhook deliveries (headers, HMAC, payloads) to the local gateway, the real handler
queues follow-up jobs, and the real agent (emulator profile, in its sandbox) makes a second commit on the
PR's branch and replies on the comment."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from aipm.local.forge.webhooks import Delivery
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from lambda_src.github.webhooks import signature_of
from lambda_src.records.models import Job
from tests.cli.test_cli_e2e import console_script
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e

REVIEWER = ("rita", "rita-token")  # a collaborator of the demo repository
STRANGER = ("sam", "sam-token")  # no association with it
REPO = f"/repos/{DEMO_OWNER}/{DEMO_REPO}"
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "no_changes"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        tmp_path_factory.mktemp("stack"), StackOptions(emulator_work_s=0.2, sweep_interval_s=2)
    ) as s:
        for login, token in (REVIEWER, STRANGER):
            s.forge.add_user(login, token)
        s.forge.add_collaborator(DEMO_OWNER, DEMO_REPO, REVIEWER[0])
        yield s


@pytest.fixture(scope="module")
def pr(stack: LocalStack) -> dict[str, Any]:
    """A delegated task whose first job completed: the PR the conversation is about."""
    task = {
        "owner": DEMO_OWNER,
        "repo": DEMO_REPO,
        "branchName": "feature/export",
        "taskTitle": "Add export",
        "objective": "Users can export their data",
        "acceptanceCriteria": ["Export works"],
    }
    status, delegated = stack.api("POST", "/api/personal-delegate", task)
    assert status == 201, delegated
    job = wait_for_job(stack, delegated["jobId"], timeout_s=90)
    assert job["status"] == "completed", job
    return delegated


def as_person(stack: LocalStack, person: tuple[str, str], method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"{stack.forge.api_url}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {person[1]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def answered(stack: LocalStack, event: str, subject: int) -> tuple[Delivery, dict[str, Any]]:
    """The delivery of `event` about `subject` (the comment's id; for `issues`, the issue's number) once the
    gateway answered it, and the answer. (The product's own PR comments are delivered too, in between.)"""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for delivery in stack.forge.deliveries:
            if delivery.event != event or delivery.redelivery:
                continue
            payload = delivery.payload()
            about = payload["issue"]["number"] if event == "issues" else payload["comment"]["id"]
            if about == subject:
                assert delivery.done.wait(30)
                return delivery, json.loads(delivery.response)
        time.sleep(0.05)
    raise AssertionError(f"no {event} delivery about {subject}")


def ended(stack: LocalStack, job_id: str, timeout_s: float = 90) -> Job:
    """The job once it ended (read from the table: a follow-up belongs to the GitHub login, not the demo
    person the API's token is for)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = stack.store().get_job(job_id)
        if job.status.value in TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def git(stack: LocalStack, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), *args], capture_output=True, text=True, check=True
    ).stdout


def records(stack: LocalStack) -> list[dict[str, Any]]:
    """Every item but the agents' heartbeats (rewritten every few seconds whatever happens)."""
    items = stack.client("dynamodb").scan(TableName=stack.records_table)["Items"]
    return sorted((i for i in items if not i["pk"]["S"].startswith("AGENT#")), key=lambda i: i["pk"]["S"])


def job_items(stack: LocalStack) -> int:
    items = stack.client("dynamodb").scan(TableName=stack.records_table)["Items"]
    return sum(1 for i in items if i["pk"]["S"].startswith("JOB#"))


def test_a_mention_becomes_a_second_agent_commit_and_a_reply(stack: LocalStack, pr: dict[str, Any]) -> None:
    branch = pr["branchName"]
    task_md_before = git(stack, "rev-parse", f"{branch}:TASK.md")
    text = "@aipm please also document the export format"
    comment = as_person(stack, REVIEWER, "POST", f"{REPO}/issues/{pr['number']}/comments", {"body": text})

    delivery, answer = answered(stack, "issue_comment", comment["id"])

    assert delivery.status == 202, answer
    assert answer["kind"] == "follow_up" and answer["prNumber"] == pr["number"]
    job = ended(stack, answer["jobId"])
    assert job.status.value == "completed", (job.reason, job.output_tail)
    assert job.follow_up is not None and job.follow_up.parent_job_id == pr["jobId"]
    assert job.requester_id == "github:rita"
    steps = [e.step for e in job.timeline]
    assert steps == ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]

    log = git(stack, "log", "--format=%H %s", f"main..{branch}").splitlines()
    assert len(log) == 3  # TASK.md, the first job's commit, the follow-up's
    sha, subject = log[0].split(" ", 1)
    assert sha == job.commit_sha
    assert subject == "fix: Add export: follow-up"
    assert comment["html_url"] in git(stack, "log", "-1", "--format=%b", branch)
    # The brief was the CLI's TASK.md while it worked; the branch's TASK.md is unchanged.
    assert git(stack, "rev-parse", f"{branch}:TASK.md") == task_md_before
    changed = git(stack, "diff", "--name-only", f"{branch}~1", branch).split()
    assert changed == job.changed_files and "TASK.md" not in changed

    [reply] = eventually(
        lambda: [
            c
            for c in stack.forge.comments(DEMO_OWNER, DEMO_REPO, pr["number"])
            if c["id"] > comment["id"] and job.job_id in c["body"]
        ]
    )
    assert f"pushed {sha}" in reply["body"] and comment["html_url"] in reply["body"]
    assert "@aipm" not in reply["body"]  # a reply never starts another job
    record = stack.store().get_pr_record(DEMO_OWNER, DEMO_REPO, pr["number"])
    assert record is not None and job.job_id in (record.follow_up_job_ids or [])


def test_aipm_jobs_show_lists_the_prs_follow_ups_on_its_first_job(
    stack: LocalStack, pr: dict[str, Any]
) -> None:
    """The `aipm` console script against the stack's API: the PR's first job lists its follow-ups (the
    mention above made one), the record's order and statuses."""
    record = stack.store().get_pr_record(DEMO_OWNER, DEMO_REPO, pr["number"])
    assert record is not None and record.follow_up_job_ids
    env = {**os.environ, "AIPM_API_URL": stack.api_url, "AIPM_API_TOKEN": stack.api_token}

    shown = console_script("jobs", "show", pr["jobId"], env=env)
    as_json = json.loads(console_script("jobs", "show", pr["jobId"], "--json", env=env).out)

    assert shown.code == 0, shown.err
    assert [f["jobId"] for f in as_json["followUps"]] == record.follow_up_job_ids
    lines = shown.out.splitlines()
    at = lines.index("follow-ups:")
    for n, job_id in enumerate(record.follow_up_job_ids, start=1):
        job = stack.store().get_job(job_id)
        assert lines[at + n].split()[:3] == [job_id, job.status.value, "rita's"]


def test_a_redelivery_does_nothing_new(stack: LocalStack, pr: dict[str, Any]) -> None:
    made = as_person(
        stack, REVIEWER, "POST", f"{REPO}/issues/{pr['number']}/comments", {"body": "@aipm add a test"}
    )
    first, answer = answered(stack, "issue_comment", made["id"])
    assert first.status == 202, answer
    ended(stack, answer["jobId"])
    jobs, tip = job_items(stack), git(stack, "rev-parse", pr["branchName"])

    again = stack.forge.redeliver(first.guid)
    assert stack.forge.wait_deliveries(30)

    assert again.status == 200 and json.loads(again.response)["status"] == "ignored"
    assert job_items(stack) == jobs
    time.sleep(1)  # nothing queued, so nothing runs: the branch stays where it was
    assert git(stack, "rev-parse", pr["branchName"]) == tip


def test_a_bad_signature_is_401_and_writes_nothing(stack: LocalStack, pr: dict[str, Any]) -> None:
    made = as_person(
        stack, REVIEWER, "POST", f"{REPO}/issues/{pr['number']}/comments", {"body": "just a note"}
    )
    delivery, _ = answered(stack, "issue_comment", made["id"])
    before = records(stack)
    body = delivery.body.replace(b"just a note", b"@aipm delete everything")
    headers = {**delivery.headers, "X-GitHub-Delivery": "forged-1"}
    for signature in (delivery.headers["X-Hub-Signature-256"], signature_of(b"guessed", body)):
        request = urllib.request.Request(
            f"{stack.api_url}/api/github/webhook",
            data=body,
            method="POST",
            headers={**headers, "X-Hub-Signature-256": signature},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert json.load(refused.value)["error"] == "invalid_signature"
    assert records(stack) == before


def test_a_non_collaborators_mention_starts_no_job(stack: LocalStack, pr: dict[str, Any]) -> None:
    jobs = job_items(stack)
    made = as_person(
        stack, STRANGER, "POST", f"{REPO}/issues/{pr['number']}/comments", {"body": "@aipm rm -rf /"}
    )

    delivery, answer = answered(stack, "issue_comment", made["id"])

    assert delivery.status == 200
    assert answer == {
        "status": "ignored",
        "reason": "sam is NONE on this repository; only COLLABORATOR, MEMBER, OWNER start jobs",
    }
    assert job_items(stack) == jobs


def test_a_review_comment_gets_its_reply_in_the_thread(stack: LocalStack, pr: dict[str, Any]) -> None:
    body = {"body": "@aipm describe this file", "path": "README.md", "line": 1}
    comment = as_person(stack, REVIEWER, "POST", f"{REPO}/pulls/{pr['number']}/comments", body)

    delivery, answer = answered(stack, "pull_request_review_comment", comment["id"])

    assert delivery.status == 202, answer
    job = ended(stack, answer["jobId"])
    assert job.status.value == "completed", (job.reason, job.output_tail)
    assert job.follow_up is not None and (job.follow_up.path, job.follow_up.line) == ("README.md", 1)
    # The change touches the file the reviewer commented on (the emulator acts on the brief's file and line).
    assert "README.md" in (job.changed_files or [])
    readme = git(stack, "show", f"{job.commit_sha}:README.md")
    assert readme.endswith("Follow-up (line 1): written by the Kiro CLI emulator, not by Kiro.\n")
    thread = eventually(
        lambda: [
            c
            for c in stack.forge.review_comments(DEMO_OWNER, DEMO_REPO, pr["number"])
            if c.get("in_reply_to_id") == comment["id"]
        ]
    )
    assert len(thread) == 1 and job.job_id in thread[0]["body"]


def test_a_labelled_issue_becomes_a_pr_that_fixes_it(stack: LocalStack) -> None:
    issue = as_person(
        stack,
        REVIEWER,
        "POST",
        f"{REPO}/issues",
        {"title": "Add a changelog", "body": "Keep a CHANGELOG.md.\n\nFixes #999 is the reporter's text."},
    )
    as_person(stack, REVIEWER, "POST", f"{REPO}/issues/{issue['number']}/labels", {"labels": ["aipm"]})

    delivery, answer = answered(stack, "issues", issue["number"])

    assert delivery.status == 202, answer
    assert answer["kind"] == "delegation"
    job = ended(stack, answer["jobId"])
    assert job.status.value == "completed", (job.reason, job.output_tail)
    assert (job.fixes_issue, job.requester_id, job.source) == (
        issue["number"],
        "github:rita",
        "github:issues",
    )
    [pull] = [
        p for p in stack.forge.pull_requests(DEMO_OWNER, DEMO_REPO) if p["number"] == answer["prNumber"]
    ]
    assert pull["body"].endswith(f"\n\nFixes #{issue['number']}")  # the product's line, outside the quotes
    assert "```text\nKeep a CHANGELOG.md.\n\nFixes #999 is the reporter's text.\n```" in pull["body"]
    assert pull["head"]["ref"].startswith(f"aipm/issue-{issue['number']}-")
    log = git(stack, "log", "--format=%H", f"main..{pull['head']['ref']}").split()
    assert len(log) == 2 and log[0] == job.commit_sha
