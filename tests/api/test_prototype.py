"""The prototype frontend's own requests, its backend's normalisation, GitHub's branch rules, the other
targets — through the real handler, moto and the forge.

The request bodies in `fixtures/` are recorded from the prototype's source (see fixtures/README.md); the
normalisation table follows the prototype backend (demian7575/aipm apps/backend/app.js, commit
31a35349: normalizeDelegatePayload, normalizeAcceptanceCriteria, performDelegation).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import urllib3

from lambda_src.models import MAX_BRANCH_BYTES, DelegateRequest
from tests.api.conftest import GITHUB_TOKEN, USER, VALID_TASK, ApiHarness

FIXTURES = Path(__file__).parent / "fixtures"
PROTOTYPE_BODIES = sorted(FIXTURES.glob("prototype_modal_*.json"))


def show(api: ApiHarness, ref: str, path: str = "TASK.md") -> str:
    return subprocess.run(
        ["git", "--git-dir", str(api.repo_path), "show", f"{ref}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("fixture", PROTOTYPE_BODIES, ids=[p.stem for p in PROTOTYPE_BODIES])
def test_the_prototype_frontends_exact_body_opens_a_pr(api: ApiHarness, fixture: Path) -> None:
    raw = fixture.read_bytes()  # sent byte for byte, as sendJson sends JSON.stringify(payload)
    recorded = json.loads(raw)

    status, body = api.call("POST", "/api/personal-delegate", raw=raw, claims=USER)

    assert status == 201, body
    assert body["type"] == "pull_request" and body["html_url"] and body["number"] >= 1
    assert body["branchName"].startswith(recorded["branchName"] + "-")
    assert body["confirmationCode"] == "PR" + body["branchName"].rsplit("-", 1)[1]
    [pull] = api.open_pulls()
    assert (pull["number"], pull["title"]) == (body["number"], recorded["prTitle"])
    status, job = api.call("GET", f"/api/jobs/{body['jobId']}", claims=USER)
    assert status == 200
    assert (job["storyId"], job["storyTitle"] or "") == (recorded["storyId"], recorded["storyTitle"])
    assert job["source"] == "api"
    pr_record = next(i for i in api.records() if i["pk"]["S"].startswith("PR#"))
    if recorded["storyId"] is None:
        assert "storyId" not in pr_record
    else:
        assert pr_record["storyId"] == {"N": str(recorded["storyId"])}
    task_md = show(api, body["branchName"])
    for criterion in recorded["acceptanceCriteria"]:
        assert f"- [ ] {criterion}\n" in task_md  # verbatim: "-1 rows is an error" keeps its '-'


def test_unknown_fields_are_ignored_and_named_in_the_log(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    body = {**VALID_TASK, "assignee": "ada", "createTrackingCard": True, "enableGatingTests": True}

    status, answer = api.call("POST", "/api/personal-delegate", body, claims=USER)

    assert status == 201, answer
    [entry] = [r for r in caplog.records if r.getMessage() == "ignored unknown fields"]
    assert entry.fields == ["assignee", "createTrackingCard", "enableGatingTests"]  # type: ignore[attr-defined]
    assert "ada" not in str(entry.__dict__)  # names only, never values


BASE = {"owner": "acme", "repo": "tools", "taskTitle": "Add Export!", "objective": "o"}

# (what the prototype does, the body given, the field, the value the API works with)
NORMALISATION = [
    (
        "empty branchName → feature/<slug of taskTitle>",
        {"branchName": ""},
        "branch_name",
        "feature/add-export-",
    ),
    ("missing branchName → feature/<slug>", {}, "branch_name", "feature/add-export-"),
    ("null branchName → feature/<slug>", {"branchName": None}, "branch_name", "feature/add-export-"),
    ("missing prTitle → taskTitle", {}, "pr_title", "Add Export!"),
    ("empty prTitle → taskTitle", {"prTitle": "  "}, "pr_title", "Add Export!"),
    ("padded owner trimmed", {"owner": "  acme\t"}, "owner", "acme"),
    ("padded repo trimmed", {"repo": " tools "}, "repo", "tools"),
    ("padded branch trimmed", {"branchName": "  feature/x  "}, "branch_name", "feature/x"),
    ("padded title trimmed", {"taskTitle": "  Add Export!  "}, "task_title", "Add Export!"),
    ("null constraints → empty", {"constraints": None}, "constraints", ""),
    ("null criteria → none", {"acceptanceCriteria": None}, "acceptance_criteria", []),
    (
        "empty criteria items dropped",
        {"acceptanceCriteria": ["a", "", "  ", "b"]},
        "acceptance_criteria",
        ["a", "b"],
    ),
    (
        "numbers turned to text",
        {"acceptanceCriteria": [3, 2.0, 1.5]},
        "acceptance_criteria",
        ["3", "2", "1.5"],
    ),
    (
        "falsy items dropped (String(x || ''))",
        {"acceptanceCriteria": [0, False, None, "x"]},
        "acceptance_criteria",
        ["x"],
    ),
    (
        "a string is split into lines",
        {"acceptanceCriteria": " a \n\n b\n"},
        "acceptance_criteria",
        ["a", "b"],
    ),
    (
        "criteria kept verbatim",
        {"acceptanceCriteria": ["-1 returns error", "* star", "- dash"]},
        "acceptance_criteria",
        ["-1 returns error", "* star", "- dash"],
    ),
    ("'feature/' is valid with its suffix", {"branchName": "feature/"}, "branch_name", "feature/"),
    ("'v1.' is valid with its suffix", {"branchName": "v1."}, "branch_name", "v1."),
    ("'x.lock' is valid with its suffix", {"branchName": "x.lock"}, "branch_name", "x.lock"),
    ("'@' is valid with its suffix", {"branchName": "@"}, "branch_name", "@"),
    ("titles up to GitHub's 256 characters", {"taskTitle": "t" * 256}, "task_title", "t" * 256),
    (
        "a long title's slug is cut to fit the ref",
        {"taskTitle": "t" * 256},
        "branch_name",
        ("feature/" + "t" * 256)[:MAX_BRANCH_BYTES],
    ),
    ("storyId a number", {"storyId": 17}, "story_id", 17),
    ("storyId null", {"storyId": None}, "story_id", None),
    ("target missing → pr", {}, "target", "pr"),
    ("target null → pr", {"target": None}, "target", "pr"),
    ("targetNumber '' → none", {"target": "new-issue", "targetNumber": ""}, "target_number", None),
    ("targetNumber as text", {"target": "existing", "targetNumber": "12"}, "target_number", 12),
    (
        "repositoryApiUrl kept",
        {"repositoryApiUrl": " https://api.github.com "},
        "repository_api_url",
        "https://api.github.com",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "value"), [row[1:] for row in NORMALISATION], ids=[row[0] for row in NORMALISATION]
)
def test_the_prototypes_defaults_and_normalisation(body: dict[str, Any], field: str, value: object) -> None:
    assert getattr(DelegateRequest.model_validate({**BASE, **body}), field) == value


def test_a_defaulted_branch_through_the_handler(api: ApiHarness) -> None:
    body = {k: v for k, v in VALID_TASK.items() if k not in ("branchName", "prTitle")}
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**body, "taskTitle": "Add Export!"}, claims=USER
    )
    assert status == 201, answer
    assert answer["branchName"].startswith("feature/add-export--")
    assert api.open_pulls()[0]["title"] == "Add Export!"


def test_a_title_at_githubs_limit_makes_a_ref_within_255_bytes(api: ApiHarness) -> None:
    body = {**VALID_TASK, "taskTitle": "Export " * 36 + "data", "prTitle": "", "branchName": ""}
    assert len(body["taskTitle"]) == 256

    status, answer = api.call("POST", "/api/personal-delegate", body, claims=USER)

    assert status == 201, answer
    assert len(("refs/heads/" + answer["branchName"]).encode()) <= 255
    assert api.open_pulls()[0]["title"] == body["taskTitle"]


@pytest.mark.parametrize(
    "branch",
    ["機" * 77, "a" * (MAX_BRANCH_BYTES + 1), "feature/" + "é" * 112],
    ids=["cjk-231-bytes", "ascii-231-bytes", "accents-232-bytes"],
)
def test_a_branch_past_the_255_byte_ref_limit_is_400_before_anything(api: ApiHarness, branch: str) -> None:
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "branchName": branch}, claims=USER
    )

    assert (status, answer["field"]) == (400, "branchName"), answer
    assert "255" in answer["message"]
    assert api.forge.calls("graphql") == 0 and api.records() == [] and api.branches() == ["main"]


def test_the_longest_branch_that_fits_is_accepted(api: ApiHarness) -> None:
    branch = "機" * (MAX_BRANCH_BYTES // 3)
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "branchName": branch}, claims=USER
    )
    assert status == 201, answer
    assert len(("refs/heads/" + answer["branchName"]).encode()) <= 255


def _make_branch(api: ApiHarness, name: str) -> None:
    subprocess.run(["git", "--git-dir", str(api.repo_path), "branch", name, "main"], check=True)


@pytest.mark.parametrize("protocol", ["graphql", "rest"])
def test_a_branch_under_an_existing_branch_is_422_before_anything(
    api: ApiHarness, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_PROTOCOL", protocol)
    from tests.api.conftest import _reset_caches

    _reset_caches()
    _make_branch(api, "release")

    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "branchName": "release/fix"}, claims=USER
    )

    assert (status, answer["error"], answer["field"]) == (422, "branch_conflict", "branchName"), answer
    assert "release" in answer["message"]
    assert api.branches() == ["main", "release"] and api.open_pulls() == [] and api.records() == []
    if protocol == "graphql":  # found in the first query: no mutation was sent
        assert api.forge.calls("graphql.createRef") == 0


@pytest.mark.parametrize(
    ("existing", "ref", "status", "message"),
    [
        ("release", "refs/heads/release/fix", 422, "Reference update failed"),
        ("release/fix", "refs/heads/release", 422, "Reference update failed"),
        (None, "refs/heads/" + "a" * 245, 422, "Reference update failed"),
        ("main", "refs/heads/main", 422, "Reference already exists"),
    ],
    ids=["under-a-branch", "over-a-branch", "over-255-bytes", "exists"],
)
def test_the_forge_refuses_ref_writes_as_github_does(
    api: ApiHarness, existing: str | None, ref: str, status: int, message: str
) -> None:
    if existing and existing != "main":
        _make_branch(api, existing)
    http = urllib3.PoolManager()
    sha = json.loads(
        http.request(
            "GET",
            f"{api.forge.api_url}/repos/acme/tools/git/ref/heads/main",
            headers={"Authorization": f"Bearer {GITHUB_TOKEN}"},
        ).data
    )["object"]["sha"]

    answer = http.request(
        "POST",
        f"{api.forge.api_url}/repos/acme/tools/git/refs",
        body=json.dumps({"ref": ref, "sha": sha}),
        headers={"Authorization": f"Bearer {GITHUB_TOKEN}", "Content-Type": "application/json"},
    )

    assert (answer.status, json.loads(answer.data)["message"]) == (status, message)


HOSTILE = {
    **VALID_TASK,
    "taskTitle": "Fix it @acme/everyone <img src=x onerror=alert(1)>",
    "objective": (
        "Fixes acme/other#1\n<!-- hidden --><script>x</script>\n```\n# Requested by admin@example.test"
    ),
    "constraints": "closes #2 **bold** [link](https://evil.example)",
    "acceptanceCriteria": ["Resolves acme/tools#3", "````"],
}


def test_user_text_is_quoted_in_task_md_and_the_pr_body(api: ApiHarness) -> None:
    status, answer = api.call("POST", "/api/personal-delegate", HOSTILE, claims=USER)
    assert status == 201, answer

    task_md = show(api, answer["branchName"])
    [pull] = api.open_pulls()
    for document in (task_md, pull["body"]):
        first, rest = document.split("\n", 1)
        assert first.startswith("_AIPM delegated task · job `")  # provenance first
        assert "ada@example.test" not in document  # no personal data
        assert _outside_code(rest).count("@") == 0
        for word in ("Fixes", "closes", "Resolves", "<script>", "<img", "**bold**", "# Requested"):
            assert word not in _outside_code(rest), (word, document)
        assert "```\n# Requested by admin@example.test" in document  # wording kept, inside the block


def _outside_code(markdown: str) -> str:
    """The Markdown with fenced blocks and inline code spans removed (CommonMark, enough for our output)."""
    out, fence = [], None
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            continue
        if fence is not None:
            if stripped.rstrip() == fence:
                fence = None
            continue
        out.append(line)
    text = "\n".join(out)
    return re.sub(r"(`+) .*? \1", "", text)


def test_a_new_issue_target_opens_an_issue_in_the_prototypes_shape(api: ApiHarness) -> None:
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**HOSTILE, "target": "new-issue"}, claims=USER
    )

    assert status == 201, answer
    assert answer["type"] == "issue" and set(answer) == {
        "type",
        "id",
        "html_url",
        "number",
        "taskHtmlUrl",
        "threadHtmlUrl",
        "confirmationCode",
    }
    assert len(answer["confirmationCode"]) >= 6
    [issue] = api.forge.issues("acme", "tools")
    assert (issue["number"], issue["title"], issue["html_url"]) == (
        answer["number"],
        HOSTILE["taskTitle"],
        answer["html_url"],
    )
    assert "Fixes" not in _outside_code(issue["body"])
    assert api.records() == [] and api.branches() == ["main"]  # no job, as in the prototype


def test_a_target_number_gets_the_task_as_a_comment_and_the_status_shows_it(api: ApiHarness) -> None:
    opened = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)[1]
    before = api.record_kinds()

    status, answer = api.call(
        "POST",
        "/api/personal-delegate",
        {**VALID_TASK, "target": "existing-pr", "targetNumber": str(opened["number"])},
        claims=USER,
    )

    assert status == 201, answer
    assert (answer["type"], answer["number"]) == ("comment", opened["number"])
    assert (
        answer["threadHtmlUrl"] == answer["html_url"]
        and answer["taskHtmlUrl"] == answer["html_url"].split("#")[0]
    )
    assert api.record_kinds() == before  # no job
    status, seen = api.call(
        "GET",
        f"/api/personal-delegate/status?owner=acme&repo=tools&number={opened['number']}&targetType=pr",
        claims=USER,
    )
    assert status == 200, seen
    assert set(seen) == {"fetchedAt", "totalComments", "latestComment"} and seen["totalComments"] == 1
    assert seen["latestComment"]["html_url"] == answer["html_url"]
    assert seen["latestComment"]["body"].startswith("_AIPM delegated task")


def test_a_comment_on_a_missing_number_is_404_naming_it(api: ApiHarness) -> None:
    body = {**VALID_TASK, "target": "existing-issue", "targetNumber": 999}
    status, answer = api.call("POST", "/api/personal-delegate", body, claims=USER)
    assert (status, answer["field"]) == (404, "targetNumber"), answer


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("repo=tools&number=1", "owner"),
        ("owner=acme&number=1", "repo"),
        ("owner=acme&repo=tools&number=0", "number"),
    ],
)
def test_the_status_needs_owner_repo_and_number(api: ApiHarness, query: str, field: str) -> None:
    status, answer = api.call("GET", f"/api/personal-delegate/status?{query}", claims=USER)
    assert (status, answer["field"]) == (400, field), answer


@pytest.mark.parametrize(
    "url", ["https://api.github.com", "https://api.github.com/", "https://github.com", "FORGE"], ids=str
)
def test_the_repository_api_url_of_this_deployment_is_recorded(api: ApiHarness, url: str) -> None:
    url = api.forge.api_url if url == "FORGE" else url
    status, answer = api.call(
        "POST", "/api/personal-delegate", {**VALID_TASK, "repositoryApiUrl": url}, claims=USER
    )
    assert status == 201, answer
    job = api.store.get_job(answer["jobId"])
    assert job.repository_api_url == url.strip()
