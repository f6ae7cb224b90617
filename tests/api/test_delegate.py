"""POST /api/personal-delegate and GET /api/jobs/{id} through the real handler, moto and the forge."""

from __future__ import annotations

import subprocess

import pytest

from aipm.local.forge import ROUTES
from tests.api.conftest import USER, VALID_TASK, ApiHarness


def test_delegate_opens_pr_with_task_md_and_queues_job(api: ApiHarness) -> None:
    status, body = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)
    assert status == 201, body
    assert body["type"] == "pull_request"
    assert body["branchName"].startswith("feature/add-export-")
    assert body["confirmationCode"] == "PR" + body["branchName"].rsplit("-", 1)[1]
    assert body["statusUrl"] == f"https://api.example.test/prod/api/jobs/{body['jobId']}"
    assert api.branches() == sorted(["main", body["branchName"]])
    task_md = subprocess.run(
        ["git", "--git-dir", str(api.repo_path), "show", f"{body['branchName']}:TASK.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    first_line, rest = task_md.split("\n", 1)
    assert first_line.startswith("_AIPM delegated task · job `" + body["jobId"])
    assert "ada@example.test" not in task_md  # the requester stays on the job record
    assert "# ` Add export button `" in rest
    assert "```text\n- [ ] Button appears\n- [ ] Export works\n```" in rest
    assert "```text\nUse existing button patterns\n```" in rest
    [pr] = api.forge.pull_requests("acme", "tools")
    assert pr["number"] == body["number"] and pr["head"]["ref"] == body["branchName"]
    assert pr["html_url"] == body["html_url"]

    status, job = api.call("GET", f"/api/jobs/{body['jobId']}", claims=USER)
    assert status == 200
    assert job["status"] == "queued"
    assert job["prNumber"] == body["number"]
    assert job["requestedBy"] == "ada@example.test"
    assert [e["step"] for e in job["timeline"]] == ["queued"]
    kinds = sorted(item["pk"]["S"].split("#")[0] for item in api.records())
    assert kinds == ["INTENT", "JOB", "PR"]
    [intent] = [item for item in api.records() if item["pk"]["S"].startswith("INTENT#")]
    assert intent["status"]["S"] == "done" and "kind" not in intent  # out of the reconciler's index


@pytest.mark.parametrize("base_branch", [None, "trunk"], ids=["default-branch", "named-branch"])
def test_two_github_round_trips_with_or_without_a_base_branch(
    api: ApiHarness, base_branch: str | None
) -> None:
    api.forge.create_repository("acme", "trunky", default_branch="trunk", files={"README.md": "x\n"})
    task = {**VALID_TASK, "repo": "trunky"} | ({"baseBranch": base_branch} if base_branch else {})
    before = {route: api.forge.calls(route) for route in ROUTES}

    status, body = api.call("POST", "/api/personal-delegate", task, claims=USER)

    assert status == 201, body
    calls = {route: api.forge.calls(route) - n for route, n in before.items() if api.forge.calls(route) > n}
    assert calls == {
        "graphql": 2,
        "graphql.repository": 1,
        "graphql.createRef": 1,
        "graphql.createCommitOnBranch": 1,
        "graphql.createPullRequest": 1,
    }
    assert api.call("GET", f"/api/jobs/{body['jobId']}", claims=USER)[1]["baseBranch"] == "trunk"


def test_alias_route_and_default_base_branch(api: ApiHarness) -> None:
    status, body = api.call(
        "POST", "/api/delegate/personal", {**VALID_TASK, "baseBranch": "main"}, claims=USER
    )
    assert status == 201, body
    status, job = api.call("GET", f"/api/jobs/{body['jobId']}", claims=USER)
    assert job["baseBranch"] == "main"


def _without(field: str) -> dict[str, object]:
    return {k: v for k, v in VALID_TASK.items() if k != field}


BAD_REQUESTS = [
    pytest.param(_without("owner"), "owner", id="missing-owner"),
    pytest.param(_without("repo"), "repo", id="missing-repo"),
    pytest.param(_without("taskTitle"), "taskTitle", id="missing-title"),
    pytest.param(_without("objective"), "objective", id="missing-objective"),
    pytest.param({**VALID_TASK, "owner": "-acme"}, "owner", id="owner-leading-hyphen"),
    pytest.param({**VALID_TASK, "owner": "a" * 40}, "owner", id="owner-too-long"),
    pytest.param({**VALID_TASK, "owner": "ac_me"}, "owner", id="owner-underscore"),
    pytest.param({**VALID_TASK, "repo": ".."}, "repo", id="repo-dotdot"),
    pytest.param({**VALID_TASK, "repo": "tools.git"}, "repo", id="repo-dotgit"),
    pytest.param({**VALID_TASK, "repo": "to ols"}, "repo", id="repo-space"),
    pytest.param({**VALID_TASK, "branchName": "a..b"}, "branchName", id="branch-dotdot"),
    pytest.param({**VALID_TASK, "branchName": "a~1"}, "branchName", id="branch-tilde"),
    pytest.param({**VALID_TASK, "branchName": "a^b"}, "branchName", id="branch-caret"),
    pytest.param({**VALID_TASK, "branchName": "a:b"}, "branchName", id="branch-colon"),
    pytest.param({**VALID_TASK, "branchName": "a b"}, "branchName", id="branch-space"),
    pytest.param({**VALID_TASK, "branchName": "-rf"}, "branchName", id="branch-leading-dash"),
    pytest.param({**VALID_TASK, "branchName": "a\x07b"}, "branchName", id="branch-control"),
    pytest.param({**VALID_TASK, "branchName": ".hidden"}, "branchName", id="branch-dot-component"),
    pytest.param({**VALID_TASK, "baseBranch": "ma in"}, "baseBranch", id="base-branch-space"),
    pytest.param({**VALID_TASK, "taskTitle": "x\x1b[31m"}, "taskTitle", id="title-escape"),
    pytest.param({**VALID_TASK, "taskTitle": "a" * 257}, "taskTitle", id="title-too-long"),
    pytest.param({**VALID_TASK, "prTitle": "a" * 257}, "prTitle", id="pr-title-too-long"),
    pytest.param({**VALID_TASK, "branchName": "x.lock/"}, "branchName", id="branch-lock-component"),
    pytest.param({**VALID_TASK, "branchName": "a" * 231}, "branchName", id="branch-over-ref-limit"),
    pytest.param({**VALID_TASK, "branchName": "機" * 77}, "branchName", id="branch-cjk-over-255-bytes"),
    pytest.param({**VALID_TASK, "taskTitle": "Add \u202eexport"}, "taskTitle", id="title-bidi-override"),
    pytest.param({**VALID_TASK, "objective": "a\u2028b"}, "objective", id="objective-line-separator"),
    pytest.param({**VALID_TASK, "constraints": "a\u2029b"}, "constraints", id="constraints-paragraph-sep"),
    pytest.param({**VALID_TASK, "constraints": "\u2066x\u2069"}, "constraints", id="constraints-isolate"),
    pytest.param(
        {**VALID_TASK, "acceptanceCriteria": ["ok", "\u200fno"]}, "acceptanceCriteria", id="criterion-rlm"
    ),
    pytest.param({**VALID_TASK, "branchName": "a\u202eb"}, "branchName", id="branch-bidi"),
    pytest.param({**VALID_TASK, "taskTitle": "Add\u200bexport"}, "taskTitle", id="title-zero-width-space"),
    pytest.param({**VALID_TASK, "objective": "x\ufeffy"}, "objective", id="objective-bom"),
    pytest.param({**VALID_TASK, "prTitle": "feat: a\u2060b"}, "prTitle", id="pr-title-word-joiner"),
    pytest.param({**VALID_TASK, "branchName": "feature/ma\u200din"}, "branchName", id="branch-zwj"),
    pytest.param({**VALID_TASK, "storyTitle": "x\u202ey"}, "storyTitle", id="story-title-bidi"),
    pytest.param(
        {**VALID_TASK, "acceptanceCriteria": [{"a": 1}]}, "acceptanceCriteria", id="criterion-object"
    ),
    pytest.param({**VALID_TASK, "storyId": True}, "storyId", id="story-id-boolean"),
    pytest.param(
        {**VALID_TASK, "repositoryApiUrl": "https://ghe.other.example/api/v3"},
        "repositoryApiUrl",
        id="repository-api-url-other-host",
    ),
    pytest.param(
        {**VALID_TASK, "repositoryApiUrl": "not a url"}, "repositoryApiUrl", id="repository-api-url-bad"
    ),
    pytest.param({**VALID_TASK, "target": "existing-issue"}, "targetNumber", id="comment-without-number"),
    pytest.param(
        {**VALID_TASK, "target": "existing-issue", "targetNumber": -3},
        "targetNumber",
        id="target-number-negative",
    ),
    pytest.param({**VALID_TASK, "objective": ""}, "objective", id="objective-empty"),
    pytest.param({**VALID_TASK, "acceptanceCriteria": 5}, "acceptanceCriteria", id="criteria-wrong-type"),
    pytest.param(
        {**VALID_TASK, "acceptanceCriteria": ["ok"] * 51}, "acceptanceCriteria", id="criteria-too-many"
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    api: ApiHarness, body: dict, field: str
) -> None:
    status, answer = api.call("POST", "/api/personal-delegate", body, claims=USER)
    assert status == 400, answer
    assert answer["field"].startswith(field), answer
    assert field in answer["message"]
    assert api.branches() == ["main"]
    assert api.forge.pull_requests("acme", "tools") == []
    assert api.records() == []


def test_joiners_in_text_are_kept_for_emoji_and_scripts_that_need_them(api: ApiHarness) -> None:
    title = "Add \U0001f469\u200d\U0001f4bb badge \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    body = {**VALID_TASK, "taskTitle": title}
    status, answer = api.call("POST", "/api/personal-delegate", body, claims=USER)
    assert status == 201, answer
    assert api.store.get_job(answer["jobId"]).task_title == title


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"{not json", 400), (b"[1, 2]", 400), (b'{"owner": "' + b"a" * 70_000 + b'"}', 413)],
    ids=["not-json", "not-an-object", "oversized"],
)
def test_unparseable_or_oversized_bodies_are_refused(api: ApiHarness, raw: bytes, status: int) -> None:
    got, answer = api.call("POST", "/api/personal-delegate", raw=raw, claims=USER)
    assert got == status, answer
    assert answer["message"]
    assert api.branches() == ["main"] and api.records() == []


def test_unknown_repository_is_404_naming_repo_and_writes_nothing(api: ApiHarness) -> None:
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "repo": "missing"}, claims=USER
    )
    assert status == 404 and answer["field"] == "repo"
    assert api.records() == []


def test_unknown_base_branch_is_refused_naming_it(api: ApiHarness) -> None:
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "baseBranch": "nope"}, claims=USER
    )
    assert status == 422 and answer["field"] == "baseBranch"
    assert api.branches() == ["main"] and api.records() == []


def test_caller_must_be_authenticated(api: ApiHarness) -> None:
    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims={})
    assert status == 401, answer
    assert api.branches() == ["main"] and api.records() == []


def test_job_lookup_errors(api: ApiHarness) -> None:
    assert api.call("GET", "/api/jobs/" + "0" * 32, claims=USER)[0] == 404
    status, answer = api.call("GET", "/api/jobs/not-an-id", claims=USER)
    assert status == 400 and answer["field"] == "jobId"
