"""No PR without its job, never two PRs for one request: the handler killed after each write, then the
reconciler — through the real handler (in a child process that SIGKILLs itself at an injection point, see
lambda_src.faults), the real moto server and the real forge.

After the reconciler runs there is exactly one open PR for the request and it has its job, or no PR and no
branch; a retry with the same Idempotency-Key in between never adds a second PR; a second reconciler run
changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3

from aipm.local.gateway import LambdaContext
from lambda_src import reconcile_handler
from lambda_src.faults import KILL_AT_ENV
from tests.api.conftest import GITHUB_TOKEN, USER, VALID_TASK, ApiHarness, _reset_caches

ROOT = Path(__file__).resolve().parents[2]
KEY = "retry-key-0001"
# The child's Lambda context says 1 s remain, so the idempotency record it leaves "in progress" expires 1 s
# after it was killed, as a killed invocation's does when its time is up.
CHILD = textwrap.dedent(
    """
    import json, sys
    from aipm.local.gateway import proxy_event
    from lambda_src import handler

    class Context:
        function_name = "aipm-api"
        aws_request_id = "killed-request"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:aipm-api"

        def get_remaining_time_in_millis(self):
            return 1000

    headers = {"Host": "api.example.test", "Content-Type": "application/json", **json.loads(sys.argv[1])}
    event = proxy_event("POST", "/api/personal-delegate", headers, sys.stdin.buffer.read(),
                        host="api.example.test", source_ip="127.0.0.1")
    event["requestContext"]["authorizer"] = {"claims": json.loads(sys.argv[2])}
    print(json.dumps(handler.lambda_handler(event, Context())))
    """
)

BEFORE_THE_PR = {"record:intent", "github:create-ref", "github:put-contents"}
GRAPHQL_POINTS = [
    "record:intent",
    "github:open-pull-request",
    "record:pr",
    "record:job",
    "record:intent-done",
]
REST_POINTS = [
    "record:intent",
    "github:create-ref",
    "github:put-contents",
    "github:create-pull",
    "record:pr",
    "record:job",
    "record:intent-done",
]
CASES = [("graphql", point) for point in GRAPHQL_POINTS] + [("rest", point) for point in REST_POINTS]


def run_killed(point: str, *, key: str | None) -> subprocess.CompletedProcess[bytes]:
    """The real handler in a child process that kills itself (SIGKILL) right after write `point`."""
    headers = {"Idempotency-Key": key} if key else {}
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(headers), json.dumps(USER)],
        input=json.dumps(VALID_TASK).encode(),
        capture_output=True,
        env={**os.environ, KILL_AT_ENV: point, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def reconcile() -> dict[str, int]:
    """One scheduled run of the reconciler, through its Lambda entry point."""
    counts: dict[str, int] = reconcile_handler.lambda_handler({}, LambdaContext("aipm-reconcile", "s"))
    return counts


def jobs(api: ApiHarness) -> list[dict[str, Any]]:
    return [i for i in api.records() if i["pk"]["S"].startswith("JOB#")]


def assert_one_pr_with_its_job_or_nothing(api: ApiHarness) -> int | None:
    """Exactly one open PR and it has its job and PR record, or no PR, no job and no branch but main."""
    pulls = api.open_pulls()
    if not pulls:
        assert api.branches() == ["main"] and jobs(api) == []
        assert api.forge.pull_requests("acme", "tools") == [] or all(
            p["state"] == "closed" for p in api.forge.pull_requests("acme", "tools")
        )
        return None
    [pull] = pulls
    [job] = jobs(api)
    assert int(job["prNumber"]["N"]) == pull["number"] and job["status"]["S"] == "queued"
    assert job["branchName"]["S"] == pull["head"]["ref"]
    assert api.store.get_pr_record("acme", "tools", pull["number"]) is not None
    assert api.branches() == sorted(["main", pull["head"]["ref"]])
    return int(pull["number"])


@pytest.fixture
def grace_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_GRACE_S", "0")


@pytest.mark.parametrize(("protocol", "point"), CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_killed_after_each_write_the_reconciler_leaves_one_pr_with_its_job_or_nothing(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, grace_zero: None, protocol: str, point: str
) -> None:
    monkeypatch.setenv("GITHUB_PROTOCOL", protocol)
    _reset_caches()

    killed = run_killed(point, key=None)

    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    counts = reconcile()
    number = assert_one_pr_with_its_job_or_nothing(api)
    if point in BEFORE_THE_PR:
        assert number is None
    else:
        assert number is not None
    if point == "record:intent-done":
        assert counts["seen"] == 0  # the delegation had completed: nothing to settle
    assert reconcile()["seen"] == 0  # idempotent: nothing left pending
    assert_one_pr_with_its_job_or_nothing(api)


@pytest.mark.parametrize(("protocol", "point"), CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_a_retry_with_the_same_key_after_a_kill_never_adds_a_second_pr(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, grace_zero: None, protocol: str, point: str
) -> None:
    monkeypatch.setenv("GITHUB_PROTOCOL", protocol)
    _reset_caches()
    killed = run_killed(point, key=KEY)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    time.sleep(1.2)  # the killed invocation's idempotency record is past its in-progress expiry

    status, answer = api.call(
        "POST", "/api/personal-delegate", VALID_TASK, claims=USER, headers={"Idempotency-Key": KEY}
    )

    assert status == 201, answer
    [pull] = api.open_pulls()
    assert pull["number"] == answer["number"]
    assert api.store.get_job(answer["jobId"]).pr_number == answer["number"]
    reconcile()
    assert assert_one_pr_with_its_job_or_nothing(api) == answer["number"]
    again = api.call(
        "POST", "/api/personal-delegate", VALID_TASK, claims=USER, headers={"Idempotency-Key": KEY}
    )
    assert again == (201, answer)
    assert len(api.open_pulls()) == 1


def test_a_second_pr_for_one_request_is_closed_with_a_comment(api: ApiHarness, grace_zero: None) -> None:
    """An intent that tried two branches and finds a PR on each (a lost answer, then a retry): the first
    keeps its job, the second is closed with a comment saying why and its branch deleted."""
    killed = run_killed("record:intent-done", key=None)
    assert killed.returncode == -signal.SIGKILL
    [intent_item] = [i for i in api.records() if i["pk"]["S"].startswith("INTENT#")]
    intent = api.store.get_intent(intent_item["pk"]["S"].removeprefix("INTENT#"))
    assert intent is not None
    [first] = api.open_pulls()
    # A second PR on another branch of the same intent, as a resent mutation could have left it.
    subprocess.run(
        ["git", "--git-dir", str(api.repo_path), "branch", "dup-branch", first["head"]["ref"]], check=True
    )
    second = json.loads(
        urllib3.request(
            "POST",
            f"{api.forge.api_url}/repos/acme/tools/pulls",
            body=json.dumps({"head": "dup-branch", "base": "main", "title": "dup", "body": ""}),
            headers={"Authorization": f"Bearer {GITHUB_TOKEN}", "Content-Type": "application/json"},
        ).data
    )
    api.store._ddb.update_item(
        TableName=api.table,
        Key={"pk": {"S": f"INTENT#{intent.intent_id}"}, "sk": {"S": "INTENT"}},
        UpdateExpression="SET branches = list_append(branches, :b), #kind = :intent, #status = :pending",
        ExpressionAttributeNames={"#kind": "kind", "#status": "status"},
        ExpressionAttributeValues={
            ":b": {"L": [{"S": "dup-branch"}]},
            ":intent": {"S": "intent"},
            ":pending": {"S": "pending"},
        },
    )

    counts = reconcile()

    assert (counts["finished"], counts["closed"], counts["deleted"]) == (1, 1, 1)
    assert [p["number"] for p in api.open_pulls()] == [first["number"]]
    [note] = api.forge.comments("acme", "tools", second["number"])
    assert f"duplicates pull request #{first['number']}" in note["body"]
    assert "dup-branch" not in api.branches()
    assert_one_pr_with_its_job_or_nothing(api)


def test_a_pending_intent_younger_than_the_grace_period_is_left_alone(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_GRACE_S", "3600")
    killed = run_killed("github:open-pull-request", key=None)
    assert killed.returncode == -signal.SIGKILL

    assert reconcile()["seen"] == 0  # its request could still be running
    assert len(api.open_pulls()) == 1 and jobs(api) == []
