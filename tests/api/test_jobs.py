"""Job list, read, cancel, retry; worker-pool status; health; authentication — through the real handler."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from lambda_src import __version__
from lambda_src.records.models import Heartbeat, Job, JobStatus, SlotState
from tests.api.conftest import USER, ApiHarness
from tests.factories import make_job

JOB_VIEW_KEYS = {
    "jobId",
    "status",
    "repo",
    "branchName",
    "baseBranch",
    "prNumber",
    "prUrl",
    "taskTitle",
    "createdAt",
    "updatedAt",
    "attempts",
    "maxAttempts",
    "worker",
    "commitSha",
    "changedFiles",
    "error",
    "reason",
    "outputTail",
    "requestedBy",
    "storyId",
    "storyTitle",
    "source",
    "timeline",
    "followUp",
    "fixesIssue",
    "followUps",  # a PR's first job's follow-ups: GET /api/jobs/{id} only, null in lists
}


def add_jobs(api: ApiHarness, specs: list[tuple[str, JobStatus]]) -> list[Job]:
    """Store one job per (repo, status), a millisecond apart so that newest-first order is defined."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    jobs = []
    for n, (repo, status) in enumerate(specs):
        at = (start + timedelta(milliseconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        job, pr = make_job(
            repo=repo, status=status, created_at=at, updated_at=at, requested_by="ada@example.test"
        )
        api.store.create_delegation(job, pr.model_copy(update={"created_at": at}))
        jobs.append(job)
    return jobs


def ids(page: dict) -> list[str]:
    return [job["jobId"] for job in page["jobs"]]


def test_jobs_are_listed_newest_first_and_filtered(api: ApiHarness) -> None:
    jobs = add_jobs(
        api,
        [
            ("acme/tools", JobStatus.QUEUED),
            ("acme/web", JobStatus.COMPLETED),
            ("acme/tools", JobStatus.FAILED),
            ("acme/tools", JobStatus.QUEUED),
        ],
    )
    newest_first = [job.job_id for job in reversed(jobs)]

    status, page = api.call("GET", "/api/jobs", claims=USER)
    assert status == 200, page
    assert ids(page) == newest_first and page["nextCursor"] is None
    assert set(page["jobs"][0]) == JOB_VIEW_KEYS
    assert all(job["followUps"] is None for job in page["jobs"])

    assert ids(api.call("GET", "/api/jobs?status=queued", claims=USER)[1]) == [jobs[3].job_id, jobs[0].job_id]
    assert ids(api.call("GET", "/api/jobs?repo=acme/web", claims=USER)[1]) == [jobs[1].job_id]
    both = api.call("GET", "/api/jobs?repo=acme/tools&status=failed", claims=USER)[1]
    assert ids(both) == [jobs[2].job_id]


@pytest.mark.parametrize("query", ["", "?status=queued", "?repo=acme/tools"], ids=["all", "status", "repo"])
def test_pages_follow_the_cursor_through_every_job_once(api: ApiHarness, query: str) -> None:
    jobs = add_jobs(api, [("acme/tools", JobStatus.QUEUED)] * 5)
    seen: list[str] = []
    url = f"/api/jobs{query or '?'}&limit=2"
    while True:
        status, page = api.call("GET", url, claims=USER)
        assert status == 200, page
        assert len(page["jobs"]) <= 2
        seen += ids(page)
        if page["nextCursor"] is None:
            break
        url = f"/api/jobs{query or '?'}&limit=2&cursor={page['nextCursor']}"
    assert seen == [job.job_id for job in reversed(jobs)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=nope", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("repo=acme", "repo"),
        ("repo=-acme/tools", "repo"),
        ("repo=acme/tools.git", "repo"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=eyJ4IjogeyJTIjogInkifX0=", "cursor"),  # {"x": {"S": "y"}}: not a start key of this index
    ],
)
def test_bad_list_parameters_are_refused_naming_them(api: ApiHarness, query: str, field: str) -> None:
    status, answer = api.call("GET", f"/api/jobs?{query}", claims=USER)
    assert status == 400, answer
    assert answer["field"] == field and field in answer["message"]


def test_a_cursor_from_another_listing_is_refused(api: ApiHarness) -> None:
    add_jobs(api, [("acme/tools", JobStatus.QUEUED)] * 3)
    cursor = api.call("GET", "/api/jobs?limit=1", claims=USER)[1]["nextCursor"]

    status, answer = api.call("GET", f"/api/jobs?status=queued&limit=1&cursor={cursor}", claims=USER)

    assert status == 400 and answer["field"] == "cursor", answer


def test_a_job_is_read_with_every_field(api: ApiHarness) -> None:
    [job] = add_jobs(api, [("acme/tools", JobStatus.QUEUED)])

    status, view = api.call("GET", f"/api/jobs/{job.job_id}", claims=USER)

    assert status == 200 and set(view) == JOB_VIEW_KEYS
    assert (view["jobId"], view["status"], view["repo"]) == (job.job_id, "queued", "acme/tools")


def test_cancel_then_retry_record_who_asked(api: ApiHarness) -> None:
    [job] = add_jobs(api, [("acme/tools", JobStatus.QUEUED)])
    grace = {"sub": "u-9", "email": "grace@example.test", "cognito:groups": "aipm-admins"}

    status, cancelled = api.call("POST", f"/api/jobs/{job.job_id}/cancel", claims=grace)
    assert status == 200, cancelled
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled by grace@example.test"
    assert cancelled["timeline"][-1]["step"] == "cancelled"
    assert cancelled["timeline"][-1]["detail"] == "by grace@example.test"

    status, again = api.call("POST", f"/api/jobs/{job.job_id}/cancel", claims=USER)
    assert status == 409 and again["error"] == "invalid_transition", again

    status, retried = api.call("POST", f"/api/jobs/{job.job_id}/retry", claims=USER)
    assert status == 200, retried
    assert retried["status"] == "queued" and retried["attempts"] == 0
    assert (retried["timeline"][-1]["step"], retried["timeline"][-1]["detail"]) == (
        "retried",
        "by ada@example.test",
    )

    status, twice = api.call("POST", f"/api/jobs/{job.job_id}/retry", claims=USER)
    assert status == 409 and twice["error"] == "invalid_transition"


def _own_jobs(api: ApiHarness) -> tuple[Job, Job]:
    mine, _ = make_job(requested_by="ada@example.test", requester_id=USER["sub"], status=JobStatus.FAILED)
    theirs, _ = make_job(requested_by="bob@example.test", requester_id="u-bob", status=JobStatus.FAILED)
    for job in (mine, theirs):
        api.store.create_delegation(job, make_job()[1].model_copy(update={"job_id": job.job_id}))
    return mine, theirs


def test_a_caller_sees_and_acts_on_their_own_jobs_only(api: ApiHarness) -> None:
    mine, theirs = _own_jobs(api)

    assert ids(api.call("GET", "/api/jobs", claims=USER)[1]) == [mine.job_id]
    assert api.call("GET", f"/api/jobs/{mine.job_id}", claims=USER)[0] == 200
    before = api.records()
    for method, path in [
        ("GET", f"/api/jobs/{theirs.job_id}"),
        ("POST", f"/api/jobs/{theirs.job_id}/cancel"),
        ("POST", f"/api/jobs/{theirs.job_id}/retry"),
    ]:
        status, answer = api.call(method, path, claims=USER)
        # Exactly the answer for a job that does not exist: nothing tells that the id is taken.
        assert (status, answer) == (
            404,
            {"error": "job_not_found", "message": f"job {theirs.job_id} does not exist", "field": "jobId"},
        )
    assert api.records() == before


@pytest.mark.parametrize(
    "groups",
    ["aipm-admins", "[aipm-admins, other]", "other aipm-admins", ["aipm-admins"]],
    ids=["one", "bracketed", "spaces", "list"],
)
def test_the_admin_group_sees_and_acts_on_every_job(api: ApiHarness, groups: object) -> None:
    mine, theirs = _own_jobs(api)
    admin = {"sub": "u-admin", "email": "root@example.test", "cognito:groups": groups}

    assert sorted(ids(api.call("GET", "/api/jobs", claims=admin)[1])) == sorted([mine.job_id, theirs.job_id])
    status, retried = api.call("POST", f"/api/jobs/{theirs.job_id}/retry", claims=admin)
    assert status == 200 and retried["timeline"][-1]["detail"] == "by root@example.test"


def test_an_admin_lists_only_their_own_jobs_with_mine(api: ApiHarness) -> None:
    mine, theirs = _own_jobs(api)
    admin = {**USER, "cognito:groups": "aipm-admins"}  # ada, who asked for `mine`, is an admin now

    assert ids(api.call("GET", "/api/jobs?mine=true", claims=admin)[1]) == [mine.job_id]
    assert sorted(ids(api.call("GET", "/api/jobs?mine=false", claims=admin)[1])) == sorted(
        [mine.job_id, theirs.job_id]
    )
    assert ids(api.call("GET", "/api/jobs?mine=true", claims=USER)[1]) == [mine.job_id]
    status, answer = api.call("GET", "/api/jobs?mine=perhaps", claims=USER)
    assert status == 400 and answer["field"] == "mine", answer


def test_another_group_is_no_admin(api: ApiHarness) -> None:
    _, theirs = _own_jobs(api)
    claims = {**USER, "cognito:groups": "aipm-admins-not,admins"}
    assert api.call("GET", f"/api/jobs/{theirs.job_id}", claims=claims)[0] == 404


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_of_unknown_or_malformed_ids(api: ApiHarness, action: str) -> None:
    status, answer = api.call("POST", f"/api/jobs/{'0' * 32}/{action}", claims=USER)
    assert (status, answer["error"], answer["field"]) == (404, "job_not_found", "jobId")
    status, answer = api.call("POST", f"/api/jobs/NOT-AN-ID/{action}", claims=USER)
    assert (status, answer["field"]) == (400, "jobId")
    assert api.records() == []


def _heartbeat(agent_id: str, *, age_s: float, busy: list[bool], draining: bool = False) -> Heartbeat:
    at_ms = int((time.time() - age_s) * 1000)
    return Heartbeat(
        agent_id=agent_id,
        created_at=datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        at_ms=at_ms,
        version="0.1.0",
        draining=draining,
        slots=[
            SlotState(id=n, busy=b, ready=True, current_job="a" * 32 if b else None, idle_s=0 if b else 4.5)
            for n, b in enumerate(busy, start=1)
        ],
    )


def test_worker_pool_status_comes_from_the_heartbeats(api: ApiHarness) -> None:
    api.store.put_heartbeat(_heartbeat("host-a", age_s=2, busy=[True, False]))
    api.store.put_heartbeat(_heartbeat("host-b", age_s=600, busy=[True, True]))
    api.store.put_heartbeat(_heartbeat("host-c", age_s=5, busy=[False, False], draining=True))

    status, pool = api.call("GET", "/api/workers", claims=USER)

    assert status == 200, pool
    assert [(a["agentId"], a["healthy"], a["draining"]) for a in pool["agents"]] == [
        ("host-a", True, False),
        ("host-b", False, False),
        ("host-c", True, True),
    ]
    host_a = pool["agents"][0]
    assert 1.5 <= host_a["ageS"] < 60 and host_a["lastSeen"].endswith("Z") and host_a["version"] == "0.1.0"
    assert host_a["slots"][0] == {
        "id": 1,
        "busy": True,
        "ready": True,
        "currentJob": "a" * 32,
        "idleS": 0.0,
        "restarts": 0,
        "crashes": 0,
        "resets": 0,
    }
    assert (pool["totalSlots"], pool["busySlots"], pool["healthyAgents"]) == (4, 1, 2)


def test_no_heartbeat_means_no_workers(api: ApiHarness) -> None:
    assert api.call("GET", "/api/workers", claims=USER) == (
        200,
        {"agents": [], "totalSlots": 0, "busySlots": 0, "healthyAgents": 0},
    )


def test_health_needs_no_caller_and_names_the_version(api: ApiHarness) -> None:
    assert api.call("GET", "/api/health", claims=None) == (200, {"status": "ok", "version": __version__})


PRIVATE_ROUTES = [
    ("POST", "/api/personal-delegate"),
    ("POST", "/api/delegate/personal"),
    ("GET", "/api/jobs"),
    ("GET", f"/api/jobs/{'0' * 32}"),
    ("POST", f"/api/jobs/{'0' * 32}/cancel"),
    ("POST", f"/api/jobs/{'0' * 32}/retry"),
    ("GET", "/api/workers"),
    ("GET", "/api/nowhere"),
]


@pytest.mark.parametrize(("method", "path"), PRIVATE_ROUTES)
@pytest.mark.parametrize(
    "claims", [None, {}, {"email": "no-sub@example.test"}], ids=["none", "empty", "no-sub"]
)
def test_every_private_route_needs_a_caller(
    api: ApiHarness, method: str, path: str, claims: dict[str, str] | None
) -> None:
    status, answer = api.call(method, path, {"owner": "acme"} if method == "POST" else None, claims=claims)
    assert (status, answer["error"]) == (401, "unauthenticated"), answer
    assert api.records() == [] and api.branches() == ["main"]


def test_unknown_routes_are_404_in_the_error_shape(api: ApiHarness) -> None:
    status, answer = api.call("GET", "/api/nowhere", claims=USER)
    assert (status, answer["error"]) == (404, "not_found")


def test_the_output_tail_is_screened_for_token_shaped_secrets(api: ApiHarness) -> None:
    token = "ghp_" + "A1b2" * 9
    tail = f"pushing with {token}\nAKIAABCDEFGHIJKLMNOP and Bearer abcdefghijklmnopqrstuvwxyz0123\nok"
    [job] = add_jobs(api, [("acme/tools", JobStatus.FAILED)])
    api.store._ddb.update_item(
        TableName=api.table,
        Key={"pk": {"S": f"JOB#{job.job_id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET outputTail = :t",
        ExpressionAttributeValues={":t": {"S": tail}},
    )

    view = api.call("GET", f"/api/jobs/{job.job_id}", claims=USER)[1]

    assert token not in view["outputTail"] and "AKIAABCDEFGHIJKLMNOP" not in view["outputTail"]
    assert "abcdefghijklmnopqrstuvwxyz0123" not in view["outputTail"]
    assert view["outputTail"].startswith("pushing with [redacted]") and view["outputTail"].endswith("\nok")
