"""`aipm delegate` / `aipm jobs` against a fake speaking the API contract: output, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aipm.cli.errors import Exit
from tests.cli.conftest import Runner
from tests.cli.fake_api import HAPPY, FakeApi

FAST = ("--interval", "0.01")
TASK_FLAGS = ("--repo", "acme/tools", "--title", "Add export", "--objective", "Users export data")


def test_delegate_follows_each_step_in_order_and_exits_0(aipm: Runner, fake_api: FakeApi) -> None:
    result = aipm("delegate", *TASK_FLAGS, "--criterion", "Button", "--criterion", "Export", *FAST)

    assert result.code == Exit.OK, result.err
    steps = [line.split()[2] for line in result.err.splitlines() if line.startswith("  ") and "Z " in line]
    assert steps == HAPPY
    assert "PR #1: https://github.example/acme/tools/pull/1" in result.err
    assert "completed" in result.out and "files:  docs/x.md" in result.out
    sent = fake_api.seen("POST", "/api/personal-delegate")[0]
    assert sent.body == {
        "owner": "acme",
        "repo": "tools",
        "taskTitle": "Add export",
        "objective": "Users export data",
        "acceptanceCriteria": ["Button", "Export"],
        "prTitle": "Add export",
        "branchName": "feature/add-export",
    }
    assert len(sent.headers["Idempotency-Key"]) == 32


def test_a_failed_job_exits_1_and_shows_reason_output_and_how_to_retry(aipm: Runner) -> None:
    result = aipm("delegate", "--repo", "acme/tools", "--title", "Make it fail", "--objective", "x", *FAST)

    assert result.code == Exit.JOB_UNSUCCESSFUL
    assert "failed" in result.out and "the CLI exited with status 3" in result.out
    assert "error:  CliCrashed" in result.out
    assert "  | Traceback: boom" in result.out
    assert "aipm jobs retry " in result.out


def test_no_wait_prints_job_id_and_pr_url_only(aipm: Runner, fake_api: FakeApi) -> None:
    result = aipm("delegate", *TASK_FLAGS, "--no-wait")

    assert result.code == Exit.OK
    job_id = next(iter(fake_api.jobs))
    assert result.out.splitlines() == [f"job  {job_id}", "pr   https://github.example/acme/tools/pull/1"]
    assert fake_api.seen("GET", "/api/jobs") == []


def test_json_output_is_the_api_json(aipm: Runner, fake_api: FakeApi) -> None:
    result = aipm("--json", "delegate", *TASK_FLAGS, "--no-wait")
    answer = json.loads(result.out)
    assert answer["jobId"] in fake_api.jobs and answer["type"] == "pull_request"
    assert result.err == ""

    followed = aipm("delegate", *TASK_FLAGS, "--branch", "feature/other", "--json", *FAST)
    value = json.loads(followed.out)
    assert value["job"]["status"] == "completed" and value["delegation"]["number"] == 2
    assert followed.err == ""  # no progress lines with --json


def test_task_file_yaml_with_flags_winning(aipm: Runner, fake_api: FakeApi, tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "owner: acme\nrepo: tools\nbranchName: feature/from-file\ntaskTitle: From a file\n"
        "objective: |\n  Line one\n  Line two\nprTitle: 'feat: from a file'\nconstraints: Keep it small\n"
        "acceptanceCriteria:\n  - First\n  - Second\nbaseBranch: develop\n"
    )
    result = aipm("delegate", "-f", str(task), "--title", "Overridden", "--no-wait")

    assert result.code == Exit.OK, result.err
    body = fake_api.seen("POST", "/api/personal-delegate")[0].body
    assert body["taskTitle"] == "Overridden"
    assert body["objective"] == "Line one\nLine two\n"
    assert body["acceptanceCriteria"] == ["First", "Second"]
    assert body["prTitle"] == "feat: from a file" and body["baseBranch"] == "develop"


def test_idempotency_key_makes_a_repeat_return_the_first_job(aipm: Runner, fake_api: FakeApi) -> None:
    first = aipm("--json", "delegate", *TASK_FLAGS, "--no-wait", "--idempotency-key", "k-1")
    again = aipm("--json", "delegate", *TASK_FLAGS, "--no-wait", "--idempotency-key", "k-1")
    assert json.loads(first.out)["jobId"] == json.loads(again.out)["jobId"]
    assert len(fake_api.jobs) == 1


def test_a_transient_503_is_retried_with_the_same_idempotency_key(aipm: Runner, fake_api: FakeApi) -> None:
    fake_api.answers.append((503, {"error": "github_unavailable", "message": "GitHub did not answer"}))
    result = aipm("delegate", *TASK_FLAGS, "--no-wait")

    assert result.code == Exit.OK, result.err
    posts = fake_api.seen("POST", "/api/personal-delegate")
    assert len(posts) == 2
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]


def test_missing_fields_are_named_with_their_flags_and_nothing_is_sent(
    aipm: Runner, fake_api: FakeApi
) -> None:
    result = aipm("delegate", "--repo", "acme/tools", "--title", "No objective")

    assert result.code == Exit.USAGE
    assert "objective (--objective)" in result.err
    assert fake_api.requests == []


def test_the_apis_field_error_exits_2_naming_the_field(aipm: Runner) -> None:
    result = aipm("delegate", *TASK_FLAGS, "--branch", "has space")
    assert result.code == Exit.USAGE
    assert "invalid_request: branchName: must not contain spaces (field branchName)" in result.err


def test_list_table_filters_and_pages(aipm: Runner, fake_api: FakeApi) -> None:
    for n in range(5):
        fake_api.add_job(f"Job {n}", status="completed" if n % 2 else "failed")
    other = fake_api.add_job("Elsewhere", repo="acme/web")

    table = aipm("jobs", "list")
    assert table.code == Exit.OK
    assert table.out.splitlines()[0].split() == ["JOB", "STATUS", "REPO", "PR", "UPDATED", "TITLE"]
    assert len(table.out.splitlines()) == 7

    failed = json.loads(aipm("jobs", "list", "--status", "failed", "--json").out)
    assert {j["taskTitle"] for j in failed["jobs"]} == {"Job 0", "Job 2", "Job 4"}
    assert (
        json.loads(aipm("--json", "jobs", "list", "--repo", "acme/web").out)["jobs"][0]["jobId"]
        == other["jobId"]
    )

    theirs = fake_api.add_job("Theirs", requestedBy="someone@example.com")
    mine = json.loads(aipm("--json", "jobs", "list", "--mine").out)["jobs"]
    assert theirs["jobId"] not in {j["jobId"] for j in mine} and len(mine) == 6
    assert any("mine=true" in r.path for r in fake_api.seen("GET", "/api/jobs?"))
    del fake_api.jobs[theirs["jobId"]]

    page = aipm("jobs", "list", "--limit", "2")
    assert "more: aipm jobs list --cursor 2" in page.out
    everything = json.loads(aipm("--json", "jobs", "list", "--limit", "2", "--all").out)
    assert len(everything["jobs"]) == 6 and everything["nextCursor"] is None


def test_show_prints_details_and_timeline(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Shown", status="failed", reason="timed out", error="Timeout", attempts=3)
    result = aipm("jobs", "show", job["jobId"])
    assert result.code == Exit.OK
    assert "status:    failed" in result.out and "attempts:  3 of 3" in result.out
    assert "error:     Timeout" in result.out
    assert [line.split()[2] for line in result.out.splitlines()[-2:]] == ["queued", "failed"]


def test_show_names_what_a_follow_up_answers_and_a_labelled_issue(aipm: Runner, fake_api: FakeApi) -> None:
    """The API's followUp / fixesIssue (lambda_src.models.JobView), as `aipm jobs show` prints them."""
    follow_up = {
        "parentJobId": "0" * 32,
        "event": "pull_request_review_comment",
        "commentId": 5,
        "commentUrl": "https://github.example/acme/tools/pull/1#discussion_r5",
        "author": "rita",
        "body": "@aipm use a constant",
        "path": "src/app.py",
        "line": 12,
    }
    job = fake_api.add_job("Answered", followUp=follow_up, source="github:pull_request_review_comment")
    out = aipm("jobs", "show", job["jobId"]).out
    assert (
        f"follow-up: of job {'0' * 32}: rita's pull request review comment on src/app.py:12 "
        "https://github.example/acme/tools/pull/1#discussion_r5"
    ) in out
    issue_job = fake_api.add_job("From an issue", fixesIssue=7)
    assert "fixes:     issue #7" in aipm("jobs", "show", issue_job["jobId"]).out


def test_show_follow_prints_only_new_steps(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Followed")
    fake_api.happy_plan(job["jobId"])
    fake_api.script[job["jobId"]].insert(0, ("queued", {}))  # the first GET shows the job as it is
    fake_api.jobs[job["jobId"]]["timeline"] = []
    result = aipm("jobs", "show", job["jobId"], "--follow", *FAST)
    assert result.code == Exit.OK
    followed = [line.split()[2] for line in result.err.splitlines() if line.startswith("  ")]
    assert followed == HAPPY[1:]


def test_cancel_and_409_when_it_already_ended(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Cancel me", status="generating")
    result = aipm("jobs", "cancel", job["jobId"])
    assert result.code == Exit.OK
    assert result.out.strip() == f"job {job['jobId']}: cancelled — cancelled by tester@example.com"

    again = aipm("jobs", "cancel", job["jobId"])
    assert again.code == Exit.USAGE
    assert "invalid_transition: cannot cancel job" in again.err


def test_retry_then_follow_to_completion(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Retry me", status="failed", reason="boom")
    result = aipm("jobs", "retry", job["jobId"], "--follow", *FAST)
    assert result.code == Exit.OK, result.err
    assert "queued again" in result.err
    assert [line.split()[2] for line in result.err.splitlines() if line.startswith("  ")] == HAPPY[1:]

    refused = aipm("jobs", "retry", job["jobId"])
    assert refused.code == Exit.USAGE


def test_logs_follow_prints_each_part_of_the_output_once(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Logs")
    fake_api.happy_plan(job["jobId"])
    result = aipm("jobs", "logs", job["jobId"], "--follow", *FAST)
    assert result.code == Exit.OK
    assert result.out == "thinking...\nwrote docs/x.md\n"
    assert "job ended: completed" in result.err


def test_workers_view(aipm: Runner) -> None:
    result = aipm("workers")
    assert result.code == Exit.OK
    assert result.out.splitlines() == [
        "agent agent-a  healthy  version 0.1.0  seen 3 s ago",
        f"  slot 1  busy   job {'a' * 32}  crashes 0, resets 0",
        "  slot 2  idle   42 s  crashes 0, resets 1",  # a planned reset is not a crash
        "1 of 1 agent(s) healthy; 1 of 2 slot(s) busy",
    ]


def test_timeout_exits_5_and_says_the_job_goes_on(aipm: Runner, fake_api: FakeApi) -> None:
    job = fake_api.add_job("Slow")
    result = aipm("jobs", "show", job["jobId"], "--follow", "--timeout", "0.05", *FAST)
    assert result.code == Exit.STILL_RUNNING
    assert "still queued" in result.err and f"aipm jobs show {job['jobId']} --follow" in result.err


# -- errors a person can act on ------------------------------------------------------------------------


def test_a_rejected_token_exits_3_with_what_to_do(aipm: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPM_API_TOKEN", "wrong")
    result = aipm("jobs", "list")
    assert result.code == Exit.API
    assert "rejected the credentials (401" in result.err and "hint:" in result.err
    assert "wrong" not in result.err


def test_no_token_and_no_url(aipm: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIPM_API_TOKEN")
    assert aipm("jobs", "list").code == Exit.API
    monkeypatch.delenv("AIPM_API_URL")
    result = aipm("jobs", "list")
    assert result.code == Exit.USAGE and "no API URL" in result.err


def test_an_unreachable_api_exits_3(aipm: Runner, fake_api: FakeApi) -> None:
    closed = fake_api.url
    result = aipm("--api-url", closed.rsplit(":", 1)[0] + ":9", "jobs", "list")
    assert result.code == Exit.API
    assert "cannot reach the API" in result.err


def test_an_unknown_job_exits_2_and_a_missing_route_exits_3(aipm: Runner, fake_api: FakeApi) -> None:
    assert aipm("jobs", "show", "0" * 32).code == Exit.USAGE
    fake_api.missing_routes.add("workers")
    result = aipm("workers")
    assert result.code == Exit.API and "no route GET /api/workers" in result.err


def test_plain_http_to_a_remote_host_is_refused_before_sending_the_token(aipm: Runner) -> None:
    result = aipm("--api-url", "http://api.example.com/prod", "jobs", "list")
    assert result.code == Exit.USAGE and "plain http" in result.err


def test_a_server_error_exits_3(aipm: Runner, fake_api: FakeApi) -> None:
    fake_api.answers.append((500, {"error": "misconfigured", "message": "the service is misconfigured"}))
    result = aipm("jobs", "list")
    assert result.code == Exit.API and "the API failed (500)" in result.err


def test_bad_flags_exit_2(aipm: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        aipm("jobs", "list", "--status", "nonsense")
    assert exited.value.code == Exit.USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_help_lists_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from aipm.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes:" in text
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"):
        assert f"\n  {code}" in text


def test_ctrl_c_while_following_says_the_job_goes_on(
    aipm: Runner, fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("aipm.cli.app.follow", interrupted)
    result = aipm("delegate", *TASK_FLAGS)
    job_id = next(iter(fake_api.jobs))
    assert result.code == Exit.INTERRUPTED
    assert "stopped following" in result.err and f"aipm jobs show {job_id} --follow" in result.err


def test_show_lists_a_prs_follow_ups_on_its_first_job(aipm: Runner, fake_api: FakeApi) -> None:
    """GET /api/jobs/{id} `followUps` (lambda_src.models.FollowUpView), one line each in `aipm jobs show`."""
    first = fake_api.add_job("Add export", status="completed")
    first["followUps"] = [
        {"jobId": "f" * 32, "status": "completed", "author": "rita", "event": "issue_comment",
         "commentUrl": "", "path": None, "line": None, "commitSha": "c" * 40},
        {"jobId": "e" * 32, "status": "queued", "author": "sam", "event": "pull_request_review_comment",
         "commentUrl": "", "path": "src/app.py", "line": 3, "commitSha": None},
    ]  # fmt: skip
    lines = aipm("jobs", "show", first["jobId"]).out.splitlines()
    at = lines.index("follow-ups:")
    assert lines[at + 1 : at + 3] == [
        f"  {'f' * 32}  completed  rita's issue comment  cccccccccccc",
        f"  {'e' * 32}  queued  sam's pull request review comment on src/app.py:3",
    ]
    assert lines[at + 3] == "timeline:"
