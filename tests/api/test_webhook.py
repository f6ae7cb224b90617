"""POST /api/github/webhook through the real handler, moto and the forge.

The deliveries are the forge's own (aipm.local.forge.webhooks: GitHub's headers, HMAC and payload shapes),
made by people's API calls on the forge (a comment, a review comment, a review, a label), sent to a loopback
receiver and then handed to the handler byte for byte as API Gateway would.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aipm.local.forge.webhooks import Delivery
from lambda_src.github.webhooks import signature_of
from tests.api.conftest import GITHUB_TOKEN, USER, VALID_TASK, ApiHarness, _reset_caches

SECRET = "webhook-secret-for-tests"
REVIEWER = ("rita", "rita-token")  # a collaborator
STRANGER = ("sam", "sam-token")  # no association with the repository
HOOK = "/api/github/webhook"


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    """A loopback receiver that answers 200: the forge's deliveries are read back from the forge."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def hooked(
    api: ApiHarness, sink: str, aws_client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> ApiHarness:
    """The harness with a webhook secret in Secrets Manager, the forge's hook and two people."""
    name = f"webhook-{uuid.uuid4().hex[:8]}"
    aws_client_factory("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"secret": SECRET}))
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET_ID", name)
    _reset_caches()
    api.forge.add_webhook(sink, SECRET)
    for login, token in (REVIEWER, STRANGER):
        api.forge.add_user(login, token)
    api.forge.add_collaborator("acme", "tools", REVIEWER[0])
    return api


def forge_call(api: ApiHarness, person: tuple[str, str], method: str, path: str, body: Any) -> Any:
    """A person's REST call on the forge (their own token); returns the JSON answer."""
    request = urllib.request.Request(
        f"{api.forge.api_url}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {person[1]}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def last_delivery(api: ApiHarness, event: str) -> Delivery:
    assert api.forge.wait_deliveries(10)
    return [d for d in api.forge.deliveries if d.event == event][-1]


def deliver(api: ApiHarness, delivery: Delivery, **overrides: str) -> tuple[int, dict[str, Any]]:
    headers = {**delivery.headers, **overrides}
    return api.call("POST", HOOK, raw=delivery.body, headers=headers)


def delegated(api: ApiHarness) -> dict[str, Any]:
    status, body = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)
    assert status == 201, body
    return body


def jobs(api: ApiHarness) -> list[dict[str, Any]]:
    return [i for i in api.records() if i["pk"]["S"].startswith("JOB#")]


def test_a_collaborators_mention_queues_a_follow_up_on_the_same_branch(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    text = "@aipm please also export as CSV\r\nand keep ```fences``` and \u202e intact"
    forge_call(hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": text})
    delivery = last_delivery(hooked, "issue_comment")

    status, answer = deliver(hooked, delivery)

    assert status == 202, answer
    assert answer["status"] == "accepted" and answer["kind"] == "follow_up"
    assert answer["prNumber"] == pr["number"]
    job = hooked.store.get_job(answer["jobId"])
    assert job.status == "queued"
    assert (job.branch_name, job.pr_number, job.base_branch) == (pr["branchName"], pr["number"], "main")
    assert job.requester_id == "github:rita" and job.requested_by == "rita"
    assert job.source == "github:issue_comment"
    assert job.follow_up is not None
    assert job.follow_up.parent_job_id == pr["jobId"]
    assert job.follow_up.delivery_id == delivery.guid
    # Line breaks normalised, the bidirectional control shown as an escape: data, not a disguise.
    assert job.follow_up.body == "@aipm please also export as CSV\nand keep ```fences``` and \\u202e intact"
    assert job.follow_up.path is None and job.follow_up.comment_url.endswith(
        f"#issuecomment-{job.follow_up.comment_id}"
    )
    record = hooked.store.get_pr_record("acme", "tools", pr["number"])
    assert record is not None and record.follow_up_job_ids == [job.job_id]
    admin = {**USER, "cognito:groups": "aipm-admins"}
    status, view = hooked.call("GET", f"/api/jobs/{job.job_id}", claims=admin)
    assert status == 200 and view["followUp"]["parentJobId"] == pr["jobId"]
    assert view["followUp"]["author"] == "rita" and view["source"] == "github:issue_comment"
    assert hooked.call("GET", f"/api/jobs/{job.job_id}", claims=USER)[0] == 404  # rita's job, not ada's
    assert view["followUps"] == []  # a follow-up names its parent; the first job lists the follow-ups
    # The PR's first job (ada's) lists its follow-ups, oldest first; a list of jobs does not read them.
    status, first = hooked.call("GET", f"/api/jobs/{pr['jobId']}", claims=USER)
    assert status == 200 and first["followUp"] is None
    assert first["followUps"] == [
        {
            "jobId": job.job_id,
            "status": "queued",
            "createdAt": job.created_at,
            "updatedAt": job.updated_at,
            "author": "rita",
            "event": "issue_comment",
            "commentUrl": job.follow_up.comment_url,
            "path": None,
            "line": None,
            "commitSha": None,
        }
    ]
    listed = hooked.call("GET", "/api/jobs", claims=USER)[1]["jobs"]
    assert [j["followUps"] for j in listed if j["jobId"] == pr["jobId"]] == [None]
    assert hooked.store.delivery_exists(delivery.guid)


def test_a_redelivery_does_nothing_twice(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    path = f"/repos/acme/tools/issues/{pr['number']}/comments"
    forge_call(hooked, REVIEWER, "POST", path, {"body": "@aipm rename the button"})
    first = last_delivery(hooked, "issue_comment")
    assert deliver(hooked, first)[0] == 202
    before = hooked.records()

    again = hooked.forge.redeliver(first.guid)
    assert hooked.forge.wait_deliveries(10)
    assert again.headers["X-GitHub-Delivery"] == first.guid
    status, answer = deliver(hooked, again)

    assert status == 200, answer
    assert answer == {"status": "ignored", "reason": f"delivery {first.guid} was handled before"}
    assert hooked.records() == before


def test_concurrent_redeliveries_make_one_job(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": "@aipm go"}
    )
    delivery = last_delivery(hooked, "issue_comment")
    jobs_before = len(jobs(hooked))
    results: list[int] = []

    def send() -> None:
        results.append(deliver(hooked, delivery)[0])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == [200, 200, 200, 202]
    assert len(jobs(hooked)) == jobs_before + 1


@pytest.mark.parametrize(
    "tamper",
    [
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": ""},
        {"X-Hub-Signature-256": "sha1=abc"},
        {"X-Hub-Signature-256": signature_of(b"another secret", b"{}")},
    ],
    ids=["wrong-mac", "empty", "sha1", "other-secret"],
)
def test_a_bad_signature_is_401_and_writes_nothing(hooked: ApiHarness, tamper: dict[str, str]) -> None:
    pr = delegated(hooked)
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": "@aipm x"}
    )
    delivery = last_delivery(hooked, "issue_comment")
    before = hooked.records()

    status, answer = deliver(hooked, delivery, **tamper)

    assert status == 401, answer
    assert answer["error"] == "invalid_signature" and answer["field"] == "X-Hub-Signature-256"
    assert hooked.records() == before


def test_a_changed_body_under_the_original_signature_is_401(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": "@aipm x"}
    )
    delivery = last_delivery(hooked, "issue_comment")
    before = hooked.records()
    forged = delivery.body.replace(b'"rita"', b'"root"')
    assert forged != delivery.body

    status, _ = hooked.call("POST", HOOK, raw=forged, headers=delivery.headers)

    assert status == 401
    assert hooked.records() == before


def test_a_strangers_mention_starts_no_job(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    forge_call(
        hooked,
        STRANGER,
        "POST",
        f"/repos/acme/tools/issues/{pr['number']}/comments",
        {"body": "@aipm rm -rf"},
    )
    delivery = last_delivery(hooked, "issue_comment")
    assert delivery.payload()["comment"]["author_association"] == "NONE"
    before = hooked.records()

    status, answer = deliver(hooked, delivery)

    assert status == 200
    assert answer["status"] == "ignored"
    assert answer["reason"] == "sam is NONE on this repository; only COLLABORATOR, MEMBER, OWNER start jobs"
    added = [i for i in hooked.records() if i not in before]
    assert [i["pk"]["S"] for i in added] == [f"NOTICE#acme/tools#{pr['number']}#sam"]  # no job
    notices = [c for c in hooked.forge.comments("acme", "tools", pr["number"]) if "write access" in c["body"]]
    assert len(notices) == 1 and "@aipm" not in notices[0]["body"]

    # Told once: a second such comment on the same PR gets no second notice.
    path = f"/repos/acme/tools/issues/{pr['number']}/comments"
    forge_call(hooked, STRANGER, "POST", path, {"body": "@aipm please?"})
    assert deliver(hooked, last_delivery(hooked, "issue_comment"))[0] == 200
    notices = [c for c in hooked.forge.comments("acme", "tools", pr["number"]) if "write access" in c["body"]]
    assert len(notices) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("looks good", "the comment does not mention @aipm"),
        ("mail me@aipm.dev", "the comment does not mention @aipm"),
        ("ask @aipm-bot", "the comment does not mention @aipm"),
        ("the log said `@aipm failed`", "the comment does not mention @aipm"),
        ("```text\n@aipm quoted output\n```", "the comment does not mention @aipm"),
    ],
)
def test_a_comment_without_the_handle_is_ignored(hooked: ApiHarness, text: str, reason: str) -> None:
    pr = delegated(hooked)
    forge_call(hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": text})
    status, answer = deliver(hooked, last_delivery(hooked, "issue_comment"))
    assert (status, answer) == (200, {"status": "ignored", "reason": reason})


def test_a_review_comment_carries_its_file_and_line(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    body = {"body": "@AIPM use a constant here", "path": "README.md", "line": 1, "side": "RIGHT"}
    forge_call(hooked, REVIEWER, "POST", f"/repos/acme/tools/pulls/{pr['number']}/comments", body)
    delivery = last_delivery(hooked, "pull_request_review_comment")

    status, answer = deliver(hooked, delivery)

    assert status == 202, answer
    job = hooked.store.get_job(answer["jobId"])
    assert job.follow_up is not None
    assert (job.follow_up.event, job.follow_up.path, job.follow_up.line) == (
        "pull_request_review_comment",
        "README.md",
        1,
    )
    assert job.source == "github:pull_request_review_comment"
    assert "README.md:1" in job.timeline[0].detail


def test_a_reviews_body_queues_a_follow_up(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    review = {"body": "Nearly there. @aipm add tests", "event": "REQUEST_CHANGES"}
    forge_call(hooked, REVIEWER, "POST", f"/repos/acme/tools/pulls/{pr['number']}/reviews", review)

    status, answer = deliver(hooked, last_delivery(hooked, "pull_request_review"))

    assert status == 202, answer
    job = hooked.store.get_job(answer["jobId"])
    assert job.follow_up is not None and job.follow_up.event == "pull_request_review"


def test_a_comment_on_a_pr_this_service_did_not_open_is_ignored(hooked: ApiHarness) -> None:
    pr_number = _open_foreign_pr(hooked)
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr_number}/comments", {"body": "@aipm hi"}
    )

    status, answer = deliver(hooked, last_delivery(hooked, "issue_comment"))

    assert status == 200
    assert answer["reason"] == f"pull request #{pr_number} of acme/tools was not opened by this service"


def _open_foreign_pr(api: ApiHarness) -> int:
    """A PR someone opened by hand (no PR record): a branch with one commit, then the PR, via REST."""

    def call(method: str, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            f"{api.forge.api_url}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {GITHUB_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.load(resp)

    sha = api.forge.branches("acme", "tools")["main"]
    call("POST", "/repos/acme/tools/git/refs", {"ref": "refs/heads/by-hand", "sha": sha})
    content = base64.b64encode(b"by hand\n").decode()
    call(
        "PUT",
        "/repos/acme/tools/contents/hand.txt",
        {"message": "by hand", "content": content, "branch": "by-hand"},
    )
    pull = call("POST", "/repos/acme/tools/pulls", {"head": "by-hand", "base": "main", "title": "by hand"})
    return int(pull["number"])


def test_a_labelled_issue_opens_a_pr_that_fixes_it_once(hooked: ApiHarness) -> None:
    issue = forge_call(
        hooked,
        REVIEWER,
        "POST",
        "/repos/acme/tools/issues",
        {
            "title": "Add a --json flag",
            "body": "The CLI should print JSON.\n\nFixes #999 should stay quoted.",
        },
    )
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{issue['number']}/labels", {"labels": ["aipm"]}
    )
    delivery = last_delivery(hooked, "issues")

    status, answer = deliver(hooked, delivery)

    assert status == 202, answer
    assert answer["kind"] == "delegation"
    job = hooked.store.get_job(answer["jobId"])
    assert job.branch_name.startswith(f"aipm/issue-{issue['number']}-")
    assert (job.requester_id, job.source, job.fixes_issue) == (
        "github:rita",
        "github:issues",
        issue["number"],
    )
    [pull] = [p for p in hooked.forge.pull_requests("acme", "tools") if p["number"] == answer["prNumber"]]
    assert pull["body"].endswith(f"\n\nFixes #{issue['number']}")
    assert "```text\nThe CLI should print JSON.\n\nFixes #999 should stay quoted.\n```" in pull["body"]

    # Another delivery for the same issue (labelled again, or a second hook): nothing new.
    pulls_before = len(hooked.forge.pull_requests("acme", "tools"))
    other = str(uuid.uuid4())
    status, answer = deliver(hooked, delivery, **{"X-GitHub-Delivery": other})
    assert status == 200
    assert (
        answer["reason"] == f"issue #{issue['number']} was delegated before (pull request #{pull['number']})"
    )
    assert len(hooked.forge.pull_requests("acme", "tools")) == pulls_before


def test_another_label_is_ignored(hooked: ApiHarness) -> None:
    issue = forge_call(hooked, REVIEWER, "POST", "/repos/acme/tools/issues", {"title": "t", "body": "b"})
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{issue['number']}/labels", {"labels": ["bug"]}
    )
    status, answer = deliver(hooked, last_delivery(hooked, "issues"))
    assert (status, answer["reason"]) == (200, "label 'bug' is not 'aipm'")


def _signed(event: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": signature_of(SECRET.encode(), body)}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def test_ping_unknown_events_and_bad_headers(hooked: ApiHarness) -> None:
    ping = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    assert hooked.call("POST", HOOK, raw=ping, headers=_signed("ping", ping, "d-1"))[0] == 200
    status, answer = hooked.call("POST", HOOK, raw=ping, headers=_signed("star", ping, "d-2"))
    assert (status, answer["reason"]) == (200, "event 'star' is not one this service acts on")
    status, answer = hooked.call("POST", HOOK, raw=ping, headers=_signed("ping", ping))
    assert (status, answer["field"]) == (400, "X-GitHub-Delivery")
    status, answer = hooked.call("POST", HOOK, raw=ping, headers=_signed("ping", ping, "has space"))
    assert (status, answer["field"]) == (400, "X-GitHub-Delivery")
    form = b"payload=%7B%7D"
    headers = {**_signed("ping", form, "d-5"), "Content-Type": "application/x-www-form-urlencoded"}
    status, answer = hooked.call("POST", HOOK, raw=form, headers=headers)
    assert (status, answer["field"]) == (415, "Content-Type")
    not_json = b"payload=%7B%7D"
    status, answer = hooked.call(
        "POST", HOOK, raw=not_json, headers=_signed("issue_comment", not_json, "d-3")
    )
    assert status == 400 and answer["message"] == "the issue_comment payload is invalid: the body is not JSON"
    shape = json.dumps({"action": "created", "issue": {"number": 1}}).encode()
    status, answer = hooked.call("POST", HOOK, raw=shape, headers=_signed("issue_comment", shape, "d-4"))
    assert status == 400 and answer["field"] == "issue.user"


def test_without_a_webhook_secret_the_route_answers_503(api: ApiHarness) -> None:
    body = b"{}"
    status, answer = api.call("POST", HOOK, raw=body, headers=_signed("ping", body, "d-1"))
    assert (status, answer["error"]) == (503, "webhook_not_configured")


def test_the_webhook_needs_no_cognito_caller_but_the_rest_of_the_api_does(hooked: ApiHarness) -> None:
    assert hooked.call("GET", "/api/jobs")[0] == 401
    body = json.dumps({"zen": "z"}).encode()
    assert hooked.call("POST", HOOK, raw=body, headers=_signed("ping", body, "d-9"))[0] == 200


def test_the_openapi_document_lists_the_webhook_as_public(hooked: ApiHarness) -> None:
    status, document = hooked.call("GET", "/api/openapi.json")
    assert status == 200
    operation = document["paths"][HOOK]["post"]
    assert operation["security"] == []
    assert {"200", "202", "401"} <= set(operation["responses"])


def test_a_repository_gets_at_most_its_hourly_follow_ups(
    hooked: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_REPO_JOBS_PER_HOUR", "2")
    _reset_caches()
    pr = delegated(hooked)
    answers = []
    for n in range(3):
        path = f"/repos/acme/tools/issues/{pr['number']}/comments"
        forge_call(hooked, REVIEWER, "POST", path, {"body": f"@aipm change {n}"})
        answers.append(deliver(hooked, last_delivery(hooked, "issue_comment")))

    assert [status for status, _ in answers] == [202, 202, 200]
    assert answers[2][1]["reason"] == "acme/tools had 2 follow-up jobs this hour, its limit; ask again later"
    record = hooked.store.get_pr_record("acme", "tools", pr["number"])
    assert record is not None and len(record.follow_up_job_ids or []) == 2


def test_a_mention_on_a_closed_pr_starts_nothing(hooked: ApiHarness) -> None:
    pr = delegated(hooked)
    forge_call(
        hooked,
        ("aipm-forge", GITHUB_TOKEN),
        "PATCH",
        f"/repos/acme/tools/pulls/{pr['number']}",
        {"state": "closed"},
    )
    forge_call(
        hooked, REVIEWER, "POST", f"/repos/acme/tools/issues/{pr['number']}/comments", {"body": "@aipm more"}
    )
    delivery = last_delivery(hooked, "issue_comment")
    assert delivery.payload()["issue"]["state"] == "closed"
    jobs_before = len(jobs(hooked))

    status, answer = deliver(hooked, delivery)

    assert (status, answer["reason"]) == (200, f"pull request #{pr['number']} is closed")
    assert len(jobs(hooked)) == jobs_before
