"""The forge's REST subset: authentication, GitHub's answer shapes, refs, contents, pulls, comments, pages."""

from __future__ import annotations

import base64
import socket
import threading
from pathlib import Path

import pytest

from aipm.local.forge import Forge
from tests.forge.support import OWNER, TOKEN, Repo, call, new_repository

DOCS = "https://docs.github.com/rest"


def repo_path(repo: Repo, tail: str = "") -> str:
    return f"/api/v3/repos/{OWNER}/{repo.name}{tail}"


def main_tip(forge: Forge, repo: Repo) -> str:
    return forge.branches(OWNER, repo.name)["main"]


def add_branch_with_commit(forge: Forge, repo: Repo, branch: str) -> str:
    assert (
        call(
            forge,
            "POST",
            repo_path(repo, "/git/refs"),
            {"ref": f"refs/heads/{branch}", "sha": main_tip(forge, repo)},
        ).status
        == 201
    )
    content = base64.b64encode(b"task\n").decode()
    put = call(
        forge,
        "PUT",
        repo_path(repo, "/contents/TASK.md"),
        {"message": "Add task", "content": content, "branch": branch},
    )
    assert put.status == 201
    return str(put.body["commit"]["sha"])


@pytest.mark.parametrize(
    ("token", "scheme", "status", "message"),
    [
        (None, "Bearer", 401, "Requires authentication"),
        ("ghp_wrong", "Bearer", 401, "Bad credentials"),
        (TOKEN, "Bearer", 200, None),
        (TOKEN, "token", 200, None),
    ],
)
def test_the_api_needs_the_token(
    forge: Forge, token: str | None, scheme: str, status: int, message: str | None
) -> None:
    repo = new_repository(forge)

    answer = call(forge, "GET", repo_path(repo), token=token, scheme=scheme)

    assert answer.status == status
    if message is not None:
        assert answer.body["message"] == message
        assert answer.body["documentation_url"] == DOCS


def test_not_found_is_shaped_like_github(forge: Forge) -> None:
    for path in ("/api/v3/repos/acme/no-such-repo", "/api/v3/no/such/route"):
        answer = call(forge, "GET", path)
        assert answer.status == 404
        assert answer.body == {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


def test_repository(forge: Forge) -> None:
    repo = new_repository(forge, default_branch="trunk")

    body = call(forge, "GET", repo_path(repo)).body

    assert body["full_name"] == f"{OWNER}/{repo.name}"
    assert body["default_branch"] == "trunk"
    assert body["owner"]["login"] == OWNER
    assert body["clone_url"] == forge.clone_url(OWNER, repo.name)
    assert body["html_url"] == f"{forge.base_url}/{OWNER}/{repo.name}"
    assert body["node_id"] and isinstance(body["id"], int)


def test_refs_create_read_delete_with_slashes_in_the_branch(forge: Forge) -> None:
    repo = new_repository(forge)
    tip = main_tip(forge, repo)

    created = call(forge, "POST", repo_path(repo, "/git/refs"), {"ref": "refs/heads/feature/a/b", "sha": tip})
    again = call(forge, "POST", repo_path(repo, "/git/refs"), {"ref": "refs/heads/feature/a/b", "sha": tip})
    read = call(forge, "GET", repo_path(repo, "/git/ref/heads/feature/a/b"))
    branch = call(forge, "GET", repo_path(repo, "/branches/feature/a/b"))
    deleted = call(forge, "DELETE", repo_path(repo, "/git/refs/heads/feature/a/b"))
    gone = call(forge, "DELETE", repo_path(repo, "/git/refs/heads/feature/a/b"))

    assert created.status == 201
    assert created.body["ref"] == "refs/heads/feature/a/b"
    assert created.body["object"] == {"sha": tip, "type": "commit", "url": created.body["object"]["url"]}
    assert (again.status, again.body["message"]) == (422, "Reference already exists")
    assert read.body["object"]["sha"] == tip
    assert (branch.body["name"], branch.body["commit"]["sha"], branch.body["protected"]) == (
        "feature/a/b",
        tip,
        False,
    )
    assert (deleted.status, deleted.body) == (204, b"")
    assert (gone.status, gone.body["message"]) == (422, "Reference does not exist")


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"ref": "refs/heads/bad..name", "sha": "x"}, 422),
        ({"ref": "refs/heads/ok", "sha": "0" * 40}, 422),
        ({"sha": "0" * 40}, 422),
    ],
)
def test_invalid_refs_are_rejected(forge: Forge, payload: dict[str, str], status: int) -> None:
    repo = new_repository(forge)

    assert call(forge, "POST", repo_path(repo, "/git/refs"), payload).status == status


def test_contents_put_and_get(forge: Forge) -> None:
    repo = new_repository(forge)
    first = base64.b64encode("v1 ✓\n".encode()).decode()
    second = base64.b64encode(b"v2\n").decode()
    url = repo_path(repo, "/contents/docs/TASK.md")

    created = call(forge, "PUT", url, {"message": "Add", "content": first, "branch": "main"})
    no_sha = call(forge, "PUT", url, {"message": "Change", "content": second, "branch": "main"})
    blob_sha = created.body["content"]["sha"]
    updated = call(
        forge, "PUT", url, {"message": "Change", "content": second, "branch": "main", "sha": blob_sha}
    )
    read = call(forge, "GET", f"{url}?ref=main")
    listing = call(forge, "GET", repo_path(repo, "/contents/docs"))

    assert created.status == 201
    assert created.body["content"]["path"] == "docs/TASK.md"
    assert created.body["commit"]["parents"][0]["sha"] != created.body["commit"]["sha"]
    assert (no_sha.status, no_sha.body["message"]) == (422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    assert updated.status == 200
    assert main_tip(forge, repo) == updated.body["commit"]["sha"]
    assert base64.b64decode(read.body["content"]) == b"v2\n"
    assert read.body["encoding"] == "base64"
    assert [entry["name"] for entry in listing.body] == ["TASK.md"]


def test_pull_requests(forge: Forge) -> None:
    repo = new_repository(forge)
    head = add_branch_with_commit(forge, repo, "feature/x")
    pulls = repo_path(repo, "/pulls")
    request = {"title": "Add X", "head": f"{OWNER}:feature/x", "base": "main", "body": "Please"}

    created = call(forge, "POST", pulls, request)
    duplicate = call(forge, "POST", pulls, request)
    empty = call(forge, "POST", pulls, {"title": "Nothing", "head": "main", "base": "main"})
    number = created.body["number"]
    call(forge, "DELETE", repo_path(repo, "/git/refs/heads/feature/x"))

    assert created.status == 201
    body = created.body
    assert body["html_url"] == f"{forge.base_url}/{OWNER}/{repo.name}/pull/{number}"
    assert body["url"] == f"{forge.api_url}/repos/{OWNER}/{repo.name}/pulls/{number}"
    assert (body["head"]["ref"], body["head"]["sha"], body["base"]["ref"]) == ("feature/x", head, "main")
    assert (body["state"], body["title"], body["body"], body["user"]["login"]) == (
        "open",
        "Add X",
        "Please",
        "aipm-forge",
    )
    assert body["node_id"] and body["id"] and body["created_at"].endswith("Z")
    assert duplicate.status == 422
    assert duplicate.body["errors"][0]["message"] == f"A pull request already exists for {OWNER}:feature/x."
    assert empty.body["errors"][0]["message"] == "No commits between main and main"
    assert call(forge, "GET", f"{pulls}?state=open").body == []
    assert [p["number"] for p in call(forge, "GET", f"{pulls}?state=closed").body] == [number]
    assert [p["number"] for p in call(forge, "GET", f"{pulls}?state=all&head={OWNER}:feature/x").body] == [
        number
    ]
    assert (
        call(forge, "GET", f"{pulls}/{number}").body["head"]["sha"] == head
    )  # kept after the branch is gone


def test_comments(forge: Forge) -> None:
    repo = new_repository(forge)
    add_branch_with_commit(forge, repo, "work")
    number = call(
        forge, "POST", repo_path(repo, "/pulls"), {"title": "W", "head": "work", "base": "main"}
    ).body["number"]
    comments = repo_path(repo, f"/issues/{number}/comments")

    created = call(forge, "POST", comments, {"body": "Done"})
    listed = call(forge, "GET", comments)
    future = call(forge, "GET", f"{comments}?since=2999-01-01T00:00:00Z")
    missing = call(forge, "POST", repo_path(repo, "/issues/999/comments"), {"body": "?"})

    assert created.status == 201
    assert (created.body["body"], created.body["user"]["login"]) == ("Done", "aipm-forge")
    assert created.body["html_url"].startswith(
        f"{forge.base_url}/{OWNER}/{repo.name}/pull/{number}#issuecomment-"
    )
    assert [c["id"] for c in listed.body] == [created.body["id"]]
    assert future.body == []
    assert missing.status == 404


def test_request_bodies_are_capped(forge: Forge) -> None:
    repo = new_repository(forge)
    host, port = forge.base_url.removeprefix("http://").split(":")
    request = (
        f"POST /api/v3/repos/{OWNER}/{repo.name}/pulls HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {11 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(request.encode())
        answer = raw.recv(4096).decode()

    assert answer.startswith("HTTP/1.1 413")


def test_malformed_json_is_a_400(forge: Forge) -> None:
    repo = new_repository(forge)

    answer = call(forge, "POST", repo_path(repo, "/pulls"), raw=b"{not json")

    assert (answer.status, answer.body["message"]) == (400, "Problems parsing JSON")


def test_pull_request_page_shows_commits_and_diff_without_credentials(forge: Forge) -> None:
    """A person's browser has no token: the page is readable like a public repository's PR on GitHub."""
    repo = new_repository(forge)
    sha = add_branch_with_commit(forge, repo, "page")
    created = call(
        forge,
        "POST",
        repo_path(repo, "/pulls"),
        {"title": "<b>Bold</b> & co", "head": "page", "base": "main"},
    )
    page = f"/{OWNER}/{repo.name}/pull/{created.body['number']}"

    shown = call(forge, "GET", page, token=None)

    assert shown.status == 200
    assert shown.headers["Content-Type"] == "text/html; charset=utf-8"
    assert shown.headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'sha256-")
    assert b"&lt;b&gt;Bold&lt;/b&gt; &amp; co" in shown.body
    assert b"<b>Bold" not in shown.body
    text = shown.body.decode()
    assert "Commits (1)" in text and sha[:12] in text and "Add task" in text  # the branch's commit
    assert "TASK.md" in text and "<span class='add'>+task</span>" in text  # and its diff
    assert call(forge, "GET", f"/{OWNER}/{repo.name}/pull/999", token=None).status == 404


def test_concurrent_creates_of_one_ref_have_one_winner(forge: Forge) -> None:
    repo = new_repository(forge)
    payload = {"ref": "refs/heads/race", "sha": main_tip(forge, repo)}
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        status = call(forge, "POST", repo_path(repo, "/git/refs"), payload).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [201] + [422] * 7


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with Forge(tmp_path, TOKEN) as first:
        repo = new_repository(first)
        add_branch_with_commit(first, repo, "keep")
        call(first, "POST", repo_path(repo, "/pulls"), {"title": "Keep", "head": "keep", "base": "main"})

    with Forge(tmp_path, TOKEN) as second:
        assert [p["title"] for p in second.pull_requests(OWNER, repo.name)] == ["Keep"]
        add_branch_with_commit(second, repo, "next")
        again = call(
            second, "POST", repo_path(repo, "/pulls"), {"title": "Next", "head": "next", "base": "main"}
        )
        assert again.body["number"] == 2


def test_only_loopback_addresses_and_a_real_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Forge(tmp_path, TOKEN, host="0.0.0.0")
    with pytest.raises(ValueError, match="token"):
        Forge(tmp_path, "")
    with pytest.raises(ValueError, match="unknown route"):
        Forge(tmp_path, TOKEN).inject_fault("no_such_route", 500)


def test_ref_writes_git_cannot_store_are_refused_as_github_refuses_them(forge: Forge) -> None:
    repo = new_repository(forge)
    sha = main_tip(forge, repo)
    add_branch_with_commit(forge, repo, "release")
    add_branch_with_commit(forge, repo, "deep/er")
    refs = repo_path(repo, "/git/refs")

    answers = {
        name: call(forge, "POST", refs, {"ref": f"refs/heads/{name}", "sha": sha})
        for name in ("release/fix", "deep", "x" * 245, "release")
    }

    assert {name: (a.status, a.body["message"]) for name, a in answers.items()} == {
        "release/fix": (422, "Reference update failed"),  # under an existing branch
        "deep": (422, "Reference update failed"),  # over an existing branch
        "x" * 245: (422, "Reference update failed"),  # refs/heads/ + 245 bytes > 255
        "release": (422, "Reference already exists"),
    }
    assert sorted(forge.branches(OWNER, repo.name)) == ["deep/er", "main", "release"]


def test_issues_share_numbers_with_pulls_and_take_comments(forge: Forge) -> None:
    repo = new_repository(forge)
    add_branch_with_commit(forge, repo, "work")
    pull = call(forge, "POST", repo_path(repo, "/pulls"), {"title": "W", "head": "work", "base": "main"}).body
    issues = repo_path(repo, "/issues")

    created = call(forge, "POST", issues, {"title": "Task", "body": "Do it"})
    untitled = call(forge, "POST", issues, {"title": " ", "body": "x"})
    comment = call(
        forge, "POST", repo_path(repo, f"/issues/{created.body['number']}/comments"), {"body": "Hi"}
    )

    assert created.status == 201 and created.body["number"] == pull["number"] + 1
    assert created.body["html_url"] == f"{forge.base_url}/{OWNER}/{repo.name}/issues/{created.body['number']}"
    assert (created.body["title"], created.body["body"], created.body["state"]) == ("Task", "Do it", "open")
    assert untitled.status == 422
    assert comment.status == 201 and "/issues/" in comment.body["html_url"]
    assert [i["number"] for i in call(forge, "GET", issues).body] == [created.body["number"]]
    assert [c["body"] for c in forge.comments(OWNER, repo.name, created.body["number"])] == ["Hi"]


def test_a_pull_request_is_closed_with_patch(forge: Forge) -> None:
    repo = new_repository(forge)
    add_branch_with_commit(forge, repo, "work")
    number = call(
        forge, "POST", repo_path(repo, "/pulls"), {"title": "W", "head": "work", "base": "main"}
    ).body["number"]
    url = repo_path(repo, f"/pulls/{number}")

    closed = call(forge, "PATCH", url, {"state": "closed"})
    again = call(forge, "PATCH", url, {"state": "closed"})
    bad = call(forge, "PATCH", url, {"state": "merged"})

    assert (closed.status, closed.body["state"], again.body["state"]) == (200, "closed", "closed")
    assert closed.body["closed_at"] and bad.status == 422
    assert call(forge, "PATCH", repo_path(repo, "/pulls/999"), {"state": "closed"}).status == 404
