"""The forge's REST subset (under /api/v3), shaped as GitHub's published OpenAPI description says."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from aipm.local.forge.app import ForgeApp, ForgeError, RepoHandle, node_id, not_found, validation_failed
from aipm.local.forge.gitrepo import FORGE_LOGIN, CommitInfo, TreeEntry
from aipm.local.forge.state import (
    CommentRecord,
    IssueRecord,
    PullRecord,
    ReviewCommentRecord,
    ReviewRecord,
)

Json = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ApiRequest:
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    login: str = FORGE_LOGIN  # whose token authenticated the request


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ForgeApp, ApiRequest], ApiResponse]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


def error_body(error: ForgeError) -> Json:
    """GitHub's error document: message, documentation_url, status, and validation errors when present."""
    body: Json = {
        "message": error.message,
        "documentation_url": error.documentation_url,
        "status": str(error.status),
    }
    if error.errors:
        body["errors"] = error.errors
    return body


# ---- JSON shapes -----------------------------------------------------------------------------------------


def user_json(app: ForgeApp, login: str = FORGE_LOGIN) -> Json:
    return {
        "login": login,
        "id": sum(login.encode()) + 1,
        "node_id": node_id("U", login),
        "type": "User",
        "site_admin": False,
        "url": f"{app.urls.api}/users/{login}",
        "html_url": f"{app.urls.base}/{login}",
        "avatar_url": "",
    }


def repo_json(app: ForgeApp, repo: RepoHandle) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    return {
        "id": app.repo_id(repo),
        "node_id": node_id("R", repo.full_name),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": True,
        "visibility": "private",
        "owner": user_json(app, repo.owner),
        "html_url": f"{app.urls.base}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": api,
        "pulls_url": f"{api}/pulls{{/number}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "clone_url": f"{app.urls.base}/{repo.full_name}.git",
        "default_branch": repo.git.default_branch(),
        "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
    }


def ref_json(app: ForgeApp, repo: RepoHandle, branch: str, sha: str) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    return {
        "ref": f"refs/heads/{branch}",
        "node_id": node_id("REF", f"{repo.full_name}:refs/heads/{branch}"),
        "url": f"{api}/git/refs/heads/{branch}",
        "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"},
    }


def commit_json(app: ForgeApp, repo: RepoHandle, info: CommitInfo) -> Json:
    """A git commit as the git data and contents APIs show it."""
    api = f"{app.urls.api}/repos/{repo.full_name}"
    html = f"{app.urls.base}/{repo.full_name}/commit"
    return {
        "sha": info.oid,
        "node_id": node_id("C", f"{repo.full_name}@{info.oid}"),
        "url": f"{api}/git/commits/{info.oid}",
        "html_url": f"{html}/{info.oid}",
        "author": {"name": info.author_name, "email": info.author_email, "date": info.author_date},
        "committer": {
            "name": info.committer_name,
            "email": info.committer_email,
            "date": info.committer_date,
        },
        "message": info.message,
        "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
        "parents": [
            {
                "sha": p,
                "url": f"{api}/git/commits/{p}",
                "html_url": f"{html}/{p}",
            }
            for p in info.parents
        ],
        "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
    }


def content_json(app: ForgeApp, repo: RepoHandle, entry: TreeEntry, ref: str, *, data: bytes | None) -> Json:
    """A contents-API entry; with `data`, a file's base64 content (wrapped at 60 columns like GitHub's)."""
    api = f"{app.urls.api}/repos/{repo.full_name}"
    kind = "dir" if entry.kind == "tree" else "file"
    git_url = f"{api}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.oid}"
    html_url = f"{app.urls.base}/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{entry.path}"
    self_url = f"{api}/contents/{entry.path}?ref={ref}"
    result: Json = {
        "type": kind,
        "size": 0 if data is None else len(data),
        "name": entry.path.rsplit("/", 1)[-1],
        "path": entry.path,
        "sha": entry.oid,
        "url": self_url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": None,
        "_links": {"self": self_url, "git": git_url, "html": html_url},
    }
    if data is not None:
        encoded = base64.b64encode(data).decode("ascii")
        result["encoding"] = "base64"
        result["content"] = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
    return result


def pull_json(app: ForgeApp, repo: RepoHandle, pull: PullRecord) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    html = f"{app.urls.base}/{repo.full_name}/pull/{pull.number}"
    repository = repo_json(app, repo)

    def side(ref: str, sha: str) -> Json:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": user_json(app, repo.owner),
            "repo": repository,
        }

    return {
        "url": f"{api}/pulls/{pull.number}",
        "id": pull.id,
        "node_id": node_id("PR", f"{repo.full_name}#{pull.number}"),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{pull.number}",
        "commits_url": f"{api}/pulls/{pull.number}/commits",
        "comments_url": f"{api}/issues/{pull.number}/comments",
        "statuses_url": f"{api}/statuses/{pull.head_sha}",
        "number": pull.number,
        "state": pull.state,
        "locked": False,
        "title": pull.title,
        "user": user_json(app),
        "body": pull.body,
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
        "closed_at": pull.closed_at,
        "merged_at": None,
        "merge_commit_sha": None,
        "draft": pull.draft,
        "head": side(pull.head_ref, pull.head_sha),
        "base": side(pull.base_ref, pull.base_sha),
        "author_association": "OWNER",
        "auto_merge": None,
        "_links": {
            "self": {"href": f"{api}/pulls/{pull.number}"},
            "html": {"href": html},
            "issue": {"href": f"{api}/issues/{pull.number}"},
            "comments": {"href": f"{api}/issues/{pull.number}/comments"},
        },
    }


def issue_json(app: ForgeApp, repo: RepoHandle, issue: IssueRecord) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    return {
        "url": f"{api}/issues/{issue.number}",
        "id": issue.id,
        "node_id": node_id("I", f"{repo.full_name}#{issue.number}"),
        "html_url": f"{app.urls.base}/{repo.full_name}/issues/{issue.number}",
        "comments_url": f"{api}/issues/{issue.number}/comments",
        "number": issue.number,
        "state": issue.state,
        "title": issue.title,
        "body": issue.body,
        "user": user_json(app),
        "comments": len(issue.comments),
        "created_at": issue.created_at,
        "updated_at": issue.updated_at,
        "closed_at": None,
        "author_association": "OWNER",
        "labels": [label_json(app, repo, name) for name in issue.labels],
    }


def label_json(app: ForgeApp, repo: RepoHandle, name: str) -> Json:
    return {
        "id": sum(name.encode()) + 1,
        "node_id": node_id("LA", f"{repo.full_name}#{name}"),
        "url": f"{app.urls.api}/repos/{repo.full_name}/labels/{name}",
        "name": name,
        "color": "ededed",
        "default": False,
        "description": None,
    }


def pull_as_issue_json(app: ForgeApp, repo: RepoHandle, pull: PullRecord) -> Json:
    """A pull request as the issues API and `issue_comment` payloads show it (with `pull_request`)."""
    api = f"{app.urls.api}/repos/{repo.full_name}"
    html = f"{app.urls.base}/{repo.full_name}/pull/{pull.number}"
    return {
        "url": f"{api}/issues/{pull.number}",
        "id": pull.id,
        "node_id": node_id("I", f"{repo.full_name}#{pull.number}"),
        "html_url": html,
        "number": pull.number,
        "state": pull.state,
        "title": pull.title,
        "body": pull.body,
        "user": user_json(app),
        "comments": len(pull.comments),
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
        "closed_at": pull.closed_at,
        "author_association": "OWNER",
        "labels": [],
        "pull_request": {
            "url": f"{api}/pulls/{pull.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": None,
        },
    }


def review_comment_json(app: ForgeApp, repo: RepoHandle, number: int, comment: ReviewCommentRecord) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    body: Json = {
        "url": f"{api}/pulls/comments/{comment.id}",
        "id": comment.id,
        "node_id": node_id("PRRC", f"{repo.full_name}#{comment.id}"),
        "pull_request_review_id": None,
        "diff_hunk": "",
        "path": comment.path,
        "commit_id": comment.commit_id,
        "original_commit_id": comment.commit_id,
        "user": user_json(app, comment.author),
        "body": comment.body,
        "created_at": comment.created_at,
        "updated_at": comment.updated_at,
        "html_url": f"{app.urls.base}/{repo.full_name}/pull/{number}#discussion_r{comment.id}",
        "pull_request_url": f"{api}/pulls/{number}",
        "author_association": app.association(repo, comment.author),
        "line": comment.line,
        "original_line": comment.line,
        "side": "RIGHT",
        "start_line": None,
        "subject_type": "line",
    }
    if comment.in_reply_to_id is not None:
        body["in_reply_to_id"] = comment.in_reply_to_id
    return body


def review_json(app: ForgeApp, repo: RepoHandle, number: int, review: ReviewRecord) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    return {
        "id": review.id,
        "node_id": node_id("PRR", f"{repo.full_name}#{review.id}"),
        "user": user_json(app, review.author),
        "body": review.body,
        "state": review.state,
        "html_url": f"{app.urls.base}/{repo.full_name}/pull/{number}#pullrequestreview-{review.id}",
        "pull_request_url": f"{api}/pulls/{number}",
        "author_association": app.association(repo, review.author),
        "submitted_at": review.submitted_at,
        "commit_id": review.commit_id,
    }


def comment_json(app: ForgeApp, repo: RepoHandle, number: int, comment: CommentRecord) -> Json:
    api = f"{app.urls.api}/repos/{repo.full_name}"
    kind = "pull" if app.is_pull(repo, number) else "issues"
    return {
        "id": comment.id,
        "node_id": node_id("IC", f"{repo.full_name}#{comment.id}"),
        "url": f"{api}/issues/comments/{comment.id}",
        "html_url": f"{app.urls.base}/{repo.full_name}/{kind}/{number}#issuecomment-{comment.id}",
        "issue_url": f"{api}/issues/{number}",
        "body": comment.body,
        "user": user_json(app, comment.author),
        "created_at": comment.created_at,
        "updated_at": comment.updated_at,
        "author_association": app.association(repo, comment.author),
    }


# ---- handlers --------------------------------------------------------------------------------------------


def _repo(app: ForgeApp, request: ApiRequest) -> RepoHandle:
    return app.repository(request.params["owner"], request.params["repo"])


def _field(body: Any, key: str) -> str:
    """A required string member of the JSON body; 422 like GitHub's when it is missing or not a string."""
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise ForgeError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
    return value


def _optional(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise ForgeError(422, f"Invalid request.\n\nFor 'properties/{key}', {value!r} is not a string.")
    return value


def get_repo(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, repo_json(app, _repo(app, request)))


def get_branch(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    branch = request.params["branch"]
    tip = repo.git.branch_tip(branch)
    if tip is None:
        raise ForgeError(404, "Branch not found")
    api = f"{app.urls.api}/repos/{repo.full_name}"
    info = commit_json(app, repo, repo.git.commit_info(tip))
    body = {
        "name": branch,
        "commit": {
            "sha": tip,
            "node_id": info["node_id"],
            "url": f"{api}/commits/{tip}",
            "html_url": info["html_url"],
            "commit": {key: info[key] for key in ("author", "committer", "message", "tree", "url")},
            "parents": info["parents"],
        },
        "_links": {
            "self": f"{api}/branches/{branch}",
            "html": f"{app.urls.base}/{repo.full_name}/tree/{branch}",
        },
        "protected": False,
    }
    return ApiResponse(200, body)


def get_ref(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    branch = request.params["branch"]
    tip = repo.git.branch_tip(branch)
    if tip is None:
        raise not_found()
    return ApiResponse(200, ref_json(app, repo, branch, tip))


def create_ref(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    ref, sha = _field(request.body, "ref"), _field(request.body, "sha")
    app.create_ref(repo, ref, sha)
    return ApiResponse(201, ref_json(app, repo, ref[len("refs/heads/") :], sha))


def delete_ref(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    app.delete_branch(_repo(app, request), request.params["branch"])
    return ApiResponse(204)


def get_contents(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    ref = request.query.get("ref") or repo.git.default_branch()
    path = (request.params.get("path") or "").strip("/")
    tip = repo.git.resolve_commit(ref)
    if tip is None:
        raise ForgeError(404, f"No commit found for the ref {ref}")
    if not path:
        entries = repo.git.list_directory(tip, "")
        return ApiResponse(200, [content_json(app, repo, entry, ref, data=None) for entry in entries])
    entry = repo.git.entry(tip, path)
    if entry is None:
        raise not_found()
    if entry.kind == "tree":
        entries = repo.git.list_directory(tip, path)
        return ApiResponse(200, [content_json(app, repo, e, ref, data=None) for e in entries])
    return ApiResponse(200, content_json(app, repo, entry, ref, data=repo.git.blob(entry.oid)))


def put_contents(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    path = request.params["path"].strip("/")
    message = _field(request.body, "message")
    try:
        content = base64.b64decode(_field(request.body, "content"), validate=True)
    except binascii.Error as err:
        raise ForgeError(422, "content is not valid Base64") from err
    branch = _optional(request.body, "branch") or repo.git.default_branch()
    commit, created = app.put_file(
        repo, path=path, content=content, message=message, branch=branch, sha=_optional(request.body, "sha")
    )
    entry = repo.git.entry(commit, path)
    assert entry is not None  # just written
    body = {
        "content": content_json(app, repo, entry, branch, data=None) | {"size": len(content)},
        "commit": commit_json(app, repo, repo.git.commit_info(commit)),
    }
    return ApiResponse(201 if created else 200, body)


def list_pulls(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    state = request.query.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise validation_failed({"resource": "Search", "field": "state", "code": "invalid"})
    found = app.pulls(repo, state=state, head=request.query.get("head"), base=request.query.get("base"))
    newest_first = sorted(found, key=lambda pull: pull.number, reverse=True)
    return ApiResponse(200, [pull_json(app, repo, pull) for pull in _page(newest_first, request.query)])


def create_pull(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    body = request.body
    draft = bool(body.get("draft", False)) if isinstance(body, dict) else False
    pull = app.create_pull(
        repo,
        head=_field(body, "head"),
        base=_field(body, "base"),
        title=_field(body, "title"),
        body=_optional(body, "body") or "",
        draft=draft,
    )
    location = f"{app.urls.api}/repos/{repo.full_name}/pulls/{pull.number}"
    return ApiResponse(201, pull_json(app, repo, pull), {"Location": location})


def get_pull(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    return ApiResponse(200, pull_json(app, repo, app.pull(repo, int(request.params["number"]))))


def update_pull(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    """PATCH /pulls/{n}: the forge supports closing (`state: closed`), the one change the product makes."""
    repo = _repo(app, request)
    number = int(request.params["number"])
    state = _optional(request.body, "state")
    if state not in (None, "open", "closed"):
        raise validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
    pull = app.close_pull(repo, number) if state == "closed" else app.pull(repo, number)
    return ApiResponse(200, pull_json(app, repo, pull))


def create_issue(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    issue = app.create_issue(
        repo, title=_field(request.body, "title"), body=_optional(request.body, "body") or ""
    )
    location = f"{app.urls.api}/repos/{repo.full_name}/issues/{issue.number}"
    return ApiResponse(201, issue_json(app, repo, issue), {"Location": location})


def list_issues(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    newest_first = sorted(app.issues(repo), key=lambda issue: issue.number, reverse=True)
    return ApiResponse(200, [issue_json(app, repo, i) for i in _page(newest_first, request.query)])


def list_comments(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    number = int(request.params["number"])
    found = app.comments(repo, number, since=request.query.get("since"))
    return ApiResponse(200, [comment_json(app, repo, number, c) for c in _page(found, request.query)])


def create_comment(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    number = int(request.params["number"])
    comment = app.add_comment(repo, number, _field(request.body, "body"), author=request.login)
    answer = comment_json(app, repo, number, comment)
    if app.is_pull(repo, number):
        issue = pull_as_issue_json(app, repo, app.pull(repo, number))
    else:
        found = next(i for i in app.issues(repo) if i.number == number)
        issue = issue_json(app, repo, found)
    _emit(app, repo, request, "issue_comment", {"action": "created", "issue": issue, "comment": answer})
    return ApiResponse(201, answer)


def list_review_comments(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    repo = _repo(app, request)
    number = int(request.params["number"])
    found = app.review_comments(repo, number)
    return ApiResponse(200, [review_comment_json(app, repo, number, c) for c in _page(found, request.query)])


def create_review_comment(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    """POST /pulls/{n}/comments: `body`, `path`, `line` (and `commit_id`, `side`, which the forge takes as
    the head and RIGHT), or `in_reply_to` (GitHub Docs, "Create a review comment for a pull request")."""
    repo = _repo(app, request)
    number = int(request.params["number"])
    body = request.body if isinstance(request.body, dict) else {}
    reply_to = body.get("in_reply_to")
    line = body.get("line")
    if reply_to is None and not isinstance(line, int):
        raise ForgeError(422, 'Invalid request.\n\n"line" wasn\'t supplied.')
    comment = app.add_review_comment(
        repo,
        number,
        body=_field(body, "body"),
        path="" if reply_to is not None else _field(body, "path"),
        line=line if isinstance(line, int) else 0,
        author=request.login,
        in_reply_to=int(reply_to) if isinstance(reply_to, int) else None,
    )
    return _review_comment_created(app, repo, request, number, comment)


def reply_review_comment(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    """POST /pulls/{n}/comments/{comment_id}/replies (GitHub Docs, "Create a reply for a review comment")."""
    repo = _repo(app, request)
    number = int(request.params["number"])
    comment = app.add_review_comment(
        repo,
        number,
        body=_field(request.body, "body"),
        path="",
        line=0,
        author=request.login,
        in_reply_to=int(request.params["comment_id"]),
    )
    return _review_comment_created(app, repo, request, number, comment)


def _review_comment_created(
    app: ForgeApp, repo: RepoHandle, request: ApiRequest, number: int, comment: ReviewCommentRecord
) -> ApiResponse:
    answer = review_comment_json(app, repo, number, comment)
    pull = pull_json(app, repo, app.pull(repo, number))
    _emit(
        app,
        repo,
        request,
        "pull_request_review_comment",
        {"action": "created", "comment": answer, "pull_request": pull},
    )
    return ApiResponse(201, answer)


def create_review(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    """POST /pulls/{n}/reviews with `event` (APPROVE, REQUEST_CHANGES, COMMENT) and `body`: submitted at once
    (the forge keeps no pending reviews)."""
    repo = _repo(app, request)
    number = int(request.params["number"])
    review = app.add_review(
        repo,
        number,
        body=_optional(request.body, "body") or "",
        event=_optional(request.body, "event") or "",
        author=request.login,
    )
    answer = review_json(app, repo, number, review)
    pull = pull_json(app, repo, app.pull(repo, number))
    _emit(
        app,
        repo,
        request,
        "pull_request_review",
        {"action": "submitted", "review": answer, "pull_request": pull},
    )
    return ApiResponse(200, answer)


def add_labels(app: ForgeApp, request: ApiRequest) -> ApiResponse:
    """POST /issues/{n}/labels `{"labels": [...]}`: an `issues` `labeled` delivery per label new on it."""
    repo = _repo(app, request)
    number = int(request.params["number"])
    names = request.body.get("labels") if isinstance(request.body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise validation_failed({"resource": "Label", "field": "labels", "code": "invalid"})
    issue, added = app.add_labels(repo, number, names)
    for name in added:
        payload = {
            "action": "labeled",
            "issue": issue_json(app, repo, issue),
            "label": label_json(app, repo, name),
        }
        _emit(app, repo, request, "issues", payload)
    return ApiResponse(200, [label_json(app, repo, name) for name in issue.labels])


def _emit(app: ForgeApp, repo: RepoHandle, request: ApiRequest, event: str, payload: Json) -> None:
    """Queue the webhook deliveries of `event`; every payload carries `repository` and `sender`."""
    app.webhooks.emit(
        event, {**payload, "repository": repo_json(app, repo), "sender": user_json(app, request.login)}
    )


def _page(items: list[_T], query: dict[str, str]) -> list[_T]:
    """GitHub's page/per_page pagination (per_page at most 100, default 30)."""
    try:
        per_page = min(max(int(query.get("per_page", "30")), 1), 100)
        page = max(int(query.get("page", "1")), 1)
    except ValueError as err:
        raise ForgeError(422, "page and per_page must be numbers") from err
    return items[(page - 1) * per_page : page * per_page]


_O = r"(?P<owner>[^/]+)"
_R = r"(?P<repo>[^/]+)"
_N = r"(?P<number>[0-9]{1,9})"
_TABLE: list[tuple[str, str, str, Handler]] = [
    ("GET", rf"/repos/{_O}/{_R}", "get_repo", get_repo),
    ("GET", rf"/repos/{_O}/{_R}/branches/(?P<branch>.+)", "get_branch", get_branch),
    ("GET", rf"/repos/{_O}/{_R}/git/ref/heads/(?P<branch>.+)", "get_ref", get_ref),
    ("POST", rf"/repos/{_O}/{_R}/git/refs", "create_ref", create_ref),
    ("DELETE", rf"/repos/{_O}/{_R}/git/refs/heads/(?P<branch>.+)", "delete_ref", delete_ref),
    ("GET", rf"/repos/{_O}/{_R}/contents(?:/(?P<path>.*))?", "get_contents", get_contents),
    ("PUT", rf"/repos/{_O}/{_R}/contents/(?P<path>.+)", "put_contents", put_contents),
    ("GET", rf"/repos/{_O}/{_R}/pulls", "list_pulls", list_pulls),
    ("POST", rf"/repos/{_O}/{_R}/pulls", "create_pull", create_pull),
    ("GET", rf"/repos/{_O}/{_R}/pulls/{_N}", "get_pull", get_pull),
    ("PATCH", rf"/repos/{_O}/{_R}/pulls/{_N}", "update_pull", update_pull),
    ("GET", rf"/repos/{_O}/{_R}/issues", "list_issues", list_issues),
    ("POST", rf"/repos/{_O}/{_R}/issues", "create_issue", create_issue),
    ("GET", rf"/repos/{_O}/{_R}/issues/{_N}/comments", "list_comments", list_comments),
    ("POST", rf"/repos/{_O}/{_R}/issues/{_N}/comments", "create_comment", create_comment),
    ("POST", rf"/repos/{_O}/{_R}/issues/{_N}/labels", "add_labels", add_labels),
    ("GET", rf"/repos/{_O}/{_R}/pulls/{_N}/comments", "list_review_comments", list_review_comments),
    ("POST", rf"/repos/{_O}/{_R}/pulls/{_N}/comments", "create_review_comment", create_review_comment),
    (
        "POST",
        rf"/repos/{_O}/{_R}/pulls/{_N}/comments/(?P<comment_id>[0-9]{{1,12}})/replies",
        "reply_review_comment",
        reply_review_comment,
    ),
    ("POST", rf"/repos/{_O}/{_R}/pulls/{_N}/reviews", "create_review", create_review),
]
ROUTES = [Route(method, re.compile(pattern), name, handler) for method, pattern, name, handler in _TABLE]


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for `method` and the percent-encoded `path` below /api/v3, with decoded parameters."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found and route.method == method:
            params = {key: unquote(value) for key, value in found.groupdict().items() if value is not None}
            return route, params
    return None
