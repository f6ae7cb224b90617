"""The one GitHub client of the project: github.com, GitHub Enterprise and the local forge alike.

`open_task_pull_request` opens a task PR in two sequential round trips (one GraphQL query, one GraphQL
mutation document); `open_task_pull_request_rest` does the same with four REST calls (the prototype's
sequence, kept as the baseline). Both leave nothing behind when they fail after the branch exists.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from lambda_src.faults import checkpoint
from lambda_src.github.errors import (
    BranchAlreadyExists,
    BranchConflict,
    BranchNotFound,
    GitHubAuthError,
    GitHubError,
    GitHubRateLimited,
    GitHubRejected,
    GitHubUnavailable,
    IssueNotFound,
    RepositoryNotFound,
)
from lambda_src.github.graphql_documents import (
    OPEN_PULL_REQUEST_MUTATION,
    errors_at,
    graphql_url_for,
    open_pull_request_variables,
    parent_path_conflicts,
    target_query,
)
from lambda_src.github.transport import DEFAULT_RETRY_POLICY, MaybeLanded, Response, RetryPolicy, Transport

__all__ = ["GitHubClient", "PullRequest", "RetryPolicy"]

log = logging.getLogger(__name__)

# How far back to look for a comment whose POST may have landed (covers clock skew to GitHub).
_COMMENT_LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True)
class PullRequest:
    number: int
    html_url: str
    head_sha: str
    branch: str
    base_branch: str
    title: str = field(default="", compare=False)  # read from REST answers (the GraphQL path asks no title)


class GitHubClient:
    """GitHub REST + GraphQL client with typed errors (lambda_src.github.errors) and bounded retries.

    `api_url` is the REST base (https://api.github.com, https://host/api/v3, or the forge's api_url); the
    GraphQL endpoint is derived from it. `token_provider` is called for every request. Each request has the
    timeout `timeout_s`; retries follow `retry`. `sleep` is the wait function (a test hook).
    """

    def __init__(
        self,
        api_url: str,
        token_provider: Callable[[], str],
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._graphql_url = graphql_url_for(self._api_url)
        self._transport = Transport(token_provider, timeout_s=timeout_s, retry=retry, http=http, sleep=sleep)

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self._api_url!r})"

    @property
    def api_url(self) -> str:
        return self._api_url

    @property
    def graphql_url(self) -> str:
        return self._graphql_url

    @property
    def round_trips(self) -> int:
        """HTTP round trips this client has made so far (retries and look-ups included)."""
        return self._transport.round_trips

    # ---- small operations ---------------------------------------------------------------------------------

    def get_default_branch(self, owner: str, repo: str) -> str:
        """The repository's default branch. Raises RepositoryNotFound and the other GitHubError subclasses."""
        response = self._transport.request("GET", self._repo_url(owner, repo))
        _raise_for(response, f"read repository {owner}/{repo}", not_found=RepositoryNotFound)
        return str(_dig(response, "default_branch"))

    def get_pull_request(self, owner: str, repo: str, number: int) -> PullRequest:
        """Pull request `number` as GitHub sees it now (head_sha is the branch's current tip)."""
        response = self._transport.request("GET", self._repo_url(owner, repo, "pulls", str(number)))
        _raise_for(response, f"read pull request #{number} of {owner}/{repo}")
        return _pull_from_rest(response)

    def comment_on_pull_request(self, owner: str, repo: str, number: int, body: str) -> None:
        """Add a comment to pull request `number`. A POST that may have landed is looked up, not repeated."""
        url = self._repo_url(owner, repo, "issues", str(number), "comments")
        since = (datetime.now(UTC) - _COMMENT_LOOKBACK).strftime("%Y-%m-%dT%H:%M:%SZ")
        listing = f"{url}?{urlencode({'since': since, 'per_page': 100})}"
        self._post_comment(url, listing, body, f"comment on pull request #{number} of {owner}/{repo}")

    def reply_to_review_comment(self, owner: str, repo: str, number: int, comment_id: int, body: str) -> None:
        """Reply in the thread of review comment `comment_id` of pull request `number` (GitHub Docs, REST
        "Create a reply for a review comment": POST /repos/{owner}/{repo}/pulls/{pull_number}/comments/
        {comment_id}/replies). A POST that may have landed is looked up, not repeated."""
        url = self._repo_url(owner, repo, "pulls", str(number), "comments", str(comment_id), "replies")
        listing = self._repo_url(owner, repo, "pulls", str(number), "comments") + "?per_page=100"
        what = f"reply to review comment {comment_id} on pull request #{number} of {owner}/{repo}"
        self._post_comment(url, listing, body, what)

    def _post_comment(self, url: str, listing_url: str, body: str, what: str) -> None:
        """POST a comment `body` to `url`; if the POST may have landed (no answer), `listing_url` is read
        for a comment with the same body instead of posting twice. Raises GitHubError naming `what`."""

        def landed() -> Response | None:
            listing = self._transport.request("GET", listing_url)
            if listing.status == 200 and isinstance(listing.data, list):
                for comment in listing.data:
                    if isinstance(comment, dict) and comment.get("body") == body:
                        return Response(status=201, data=comment)
            return None

        response = self._transport.request("POST", url, {"body": body}, idempotent=False, reconcile=landed)
        _raise_for(response, what)

    def delete_branch(self, owner: str, repo: str, branch: str) -> None:
        """Delete `branch`. A branch that is already gone is not an error."""
        response = self._transport.request("DELETE", self._ref_url(owner, repo, "refs", branch))
        if response.status == 422 and "does not exist" in response.message.lower():
            log.info("branch %s of %s/%s was already gone", branch, owner, repo)
            return
        _raise_for(response, f"delete branch {branch} of {owner}/{repo}", not_found=RepositoryNotFound)

    def find_open_pull_request(self, owner: str, repo: str, branch: str) -> PullRequest | None:
        """The open pull request whose head is `branch` of owner/repo, or None."""
        opened = self._open_pulls_for(owner, repo, branch)
        return _pull_from_rest(Response(status=200, data=opened[0])) if opened else None

    def branch_exists(self, owner: str, repo: str, branch: str) -> bool:
        response = self._transport.request("GET", self._ref_url(owner, repo, "ref", branch))
        if response.status == 404:
            return False
        _raise_for(response, f"read branch {branch} of {owner}/{repo}", not_found=RepositoryNotFound)
        return True

    def close_pull_request(self, owner: str, repo: str, number: int) -> None:
        """Close pull request `number` (PATCH state=closed); closing a closed one is not an error."""
        url = self._repo_url(owner, repo, "pulls", str(number))
        response = self._transport.request("PATCH", url, {"state": "closed"})
        _raise_for(response, f"close pull request #{number} of {owner}/{repo}")

    def create_issue(self, owner: str, repo: str, title: str, body: str) -> dict[str, Any]:
        """Open an issue; GitHub's issue object (id, number, html_url, …). A POST that may have landed is
        looked up among the newest issues by title and body, not repeated."""
        url = self._repo_url(owner, repo, "issues")

        def landed() -> Response | None:
            listing = self._transport.request(
                "GET", f"{url}?{urlencode({'state': 'open', 'sort': 'created', 'per_page': 30})}"
            )
            if listing.status == 200 and isinstance(listing.data, list):
                for issue in listing.data:
                    if isinstance(issue, dict) and (issue.get("title"), issue.get("body")) == (title, body):
                        return Response(status=201, data=issue)
            return None

        response = self._transport.request(
            "POST", url, {"title": title, "body": body}, idempotent=False, reconcile=landed
        )
        _raise_for(response, f"open an issue in {owner}/{repo}", not_found=RepositoryNotFound)
        return dict(response.data) if isinstance(response.data, dict) else {}

    def comment_on_issue(self, owner: str, repo: str, number: int, body: str) -> dict[str, Any]:
        """Comment on issue or pull request `number`; GitHub's comment object (id, html_url, …)."""
        url = self._repo_url(owner, repo, "issues", str(number), "comments")
        response = self._transport.request("POST", url, {"body": body}, idempotent=False)
        _raise_for(response, f"comment on #{number} of {owner}/{repo}", not_found=IssueNotFound)
        return dict(response.data) if isinstance(response.data, dict) else {}

    def issue_comments(
        self, owner: str, repo: str, number: int, *, per_page: int = 30
    ) -> list[dict[str, Any]]:
        """The comments on issue or pull request `number`, as GitHub lists them."""
        url = self._repo_url(owner, repo, "issues", str(number), "comments")
        response = self._transport.request("GET", f"{url}?{urlencode({'per_page': per_page})}")
        _raise_for(response, f"list comments of #{number} of {owner}/{repo}", not_found=IssueNotFound)
        listing = response.data if isinstance(response.data, list) else []
        return [comment for comment in listing if isinstance(comment, dict)]

    def review_comments(
        self, owner: str, repo: str, number: int, *, per_page: int = 100
    ) -> list[dict[str, Any]]:
        """The review comments (on lines of the diff) of pull request `number`, oldest first, as GitHub
        lists them (GitHub Docs, "List review comments on a pull request": `in_reply_to_id` marks a reply
        in a thread). Raises IssueNotFound (no such pull request), GitHubError."""
        url = self._repo_url(owner, repo, "pulls", str(number), "comments")
        response = self._transport.request("GET", f"{url}?{urlencode({'per_page': per_page})}")
        _raise_for(response, f"list review comments of #{number} of {owner}/{repo}", not_found=IssueNotFound)
        listing = response.data if isinstance(response.data, list) else []
        return [comment for comment in listing if isinstance(comment, dict)]

    def file_text(self, owner: str, repo: str, path: str, ref: str) -> str | None:
        """The UTF-8 text of `path` at `ref` (a branch), or None if the file or branch is not there."""
        url = self._repo_url(owner, repo, "contents", path)
        response = self._transport.request("GET", f"{url}?{urlencode({'ref': ref})}")
        if response.status == 404:
            return None
        _raise_for(response, f"read {path} at {ref} of {owner}/{repo}")
        content = _dig(response, "content")
        return base64.b64decode(str(content)).decode("utf-8", "replace")

    # ---- the delegation: GraphQL, two round trips ---------------------------------------------------------

    def open_task_pull_request(
        self,
        *,
        owner: str,
        repo: str,
        base_branch: str | None,
        branch: str,
        files: Mapping[str, str],
        commit_message: str,
        title: str,
        body: str,
    ) -> PullRequest:
        """Create `branch` at the tip of `base_branch`, one commit adding `files` (path -> UTF-8 text), a PR.

        `base_branch` None means the repository's default branch. Two sequential round trips when nothing
        fails, with or without a base branch: one GraphQL query (repository id, base branch and its tip, does
        the branch exist) and one mutation document (createRef, createCommitOnBranch, createPullRequest).
        Raises RepositoryNotFound, BranchNotFound, BranchAlreadyExists, GitHubAuthError, GitHubRateLimited,
        GitHubUnavailable, GitHubRejected. If a step after createRef fails, the branch is deleted again.
        """
        _require_files(files)
        document, query_variables = target_query(
            owner=owner, repo=repo, base_branch=base_branch, branch=branch
        )
        target = self._graphql(document, query_variables, action=f"look up {owner}/{repo}")
        repository = target.data.get("repository")
        if not isinstance(repository, dict):
            failure = errors_at(target.errors, "repository")
            raise _graphql_error(failure, f"look up {owner}/{repo}", "repository")
        base_ref = repository.get("baseRef")
        if not isinstance(base_ref, dict):
            if base_branch is not None:
                raise BranchNotFound(
                    f"base branch '{base_branch}' does not exist in {owner}/{repo}", status=None
                )
            raise BranchNotFound(f"{owner}/{repo} has no default branch (it is empty)", status=None)
        if repository.get("headRef") is not None:
            raise BranchAlreadyExists(f"branch '{branch}' already exists in {owner}/{repo}", status=None)
        blocking = parent_path_conflicts(repository)
        if blocking:
            raise BranchConflict(
                f"branch '{branch}' cannot be created in {owner}/{repo}: branch '{blocking[0]}' exists at "
                "its parent path (git stores branches as paths)",
                status=None,
            )
        base_branch = str(_dig(base_ref, "name"))
        variables = open_pull_request_variables(
            repository_id=str(_dig(repository, "id")),
            owner=owner,
            repo=repo,
            base_branch=base_branch,
            base_oid=str(_dig(base_ref, "target", "oid")),
            branch=branch,
            files=files,
            commit_message=commit_message,
            title=title,
            body=body,
        )
        try:
            action = f"open a pull request in {owner}/{repo}"
            result = self._graphql(OPEN_PULL_REQUEST_MUTATION, variables, action=action, mutation=True)
        except MaybeLanded as unknown:
            return self._settle_unknown_outcome(owner, repo, branch, unknown)
        checkpoint("github:open-pull-request")
        return self._pull_from_mutation(result, owner, repo, branch)

    def _pull_from_mutation(self, result: _GraphQLResult, owner: str, repo: str, branch: str) -> PullRequest:
        data = result.data
        where = f"{owner}/{repo}"
        if data.get("createRef") is None:
            if data.get("createCommitOnBranch") is not None:
                log.warning("createRef failed, yet a commit landed on branch %s of %s", branch, where)
            failure = errors_at(result.errors, "createRef")
            raise _graphql_error(failure, f"create branch {branch} in {where}", "createRef")
        committed = data.get("createCommitOnBranch") is not None
        created = (data.get("createPullRequest") or {}).get("pullRequest")
        if not committed or not isinstance(created, dict):
            failed_step = "createPullRequest" if committed else "createCommitOnBranch"
            failure = errors_at(result.errors, failed_step)
            error = _graphql_error(failure, f"{failed_step} in {where}", failed_step)
            log.warning("%s failed after branch %s was created; deleting the branch", failed_step, branch)
            self._rollback(owner, repo, branch)
            raise error
        return PullRequest(
            number=int(_dig(created, "number")),
            html_url=str(_dig(created, "url")),
            head_sha=str(_dig(created, "headRefOid")),
            branch=str(_dig(created, "headRefName")),
            base_branch=str(_dig(created, "baseRefName")),
        )

    def _settle_unknown_outcome(
        self, owner: str, repo: str, branch: str, unknown: MaybeLanded
    ) -> PullRequest:
        """After a mutation whose outcome is unknown: use the PR if it was opened, else remove the branch."""
        try:
            opened = self._open_pulls_for(owner, repo, branch)
        except GitHubError:
            log.warning("could not check whether the pull request for %s was opened", branch, exc_info=True)
            opened = []
        if opened:
            pull = _pull_from_rest(Response(status=200, data=opened[0]))
            log.warning("the mutation for %s landed, its answer was lost; using PR #%d", branch, pull.number)
            return pull
        self._rollback(owner, repo, branch)
        raise unknown

    # ---- the delegation: REST, four round trips (baseline) ------------------------------------------------

    def open_task_pull_request_rest(
        self,
        *,
        owner: str,
        repo: str,
        base_branch: str | None,
        branch: str,
        files: Mapping[str, str],
        commit_message: str,
        title: str,
        body: str,
    ) -> PullRequest:
        """Same promise as open_task_pull_request over REST: GET ref, POST git/refs, PUT contents, POST pulls.

        The contents API makes one commit per file, so this path commits once per entry of `files`; without
        `base_branch` it first reads the default branch (a fifth call).
        Raises the same errors; deletes the branch again if a step after its creation fails.
        """
        _require_files(files)
        if base_branch is None:
            base_branch = self.get_default_branch(owner, repo)
        base_sha = self._branch_sha(owner, repo, base_branch)
        self._create_branch(owner, repo, branch, base_sha)
        checkpoint("github:create-ref")
        try:
            head = base_sha
            for path, text in files.items():
                head = self._put_file(owner, repo, branch, path, text, commit_message, parent=head)
                checkpoint("github:put-contents")
            pull = self._create_pull(owner, repo, branch, base_branch, title, body)
            checkpoint("github:create-pull")
            return pull
        except Exception:
            log.warning("opening the pull request failed after branch %s was created; deleting it", branch)
            self._rollback(owner, repo, branch)
            raise

    def _branch_sha(self, owner: str, repo: str, branch: str) -> str:
        response = self._transport.request("GET", self._ref_url(owner, repo, "ref", branch))
        if response.status == 404:
            repository = self._transport.request("GET", self._repo_url(owner, repo))
            _raise_for(repository, f"read repository {owner}/{repo}", not_found=RepositoryNotFound)
            raise BranchNotFound(f"base branch '{branch}' does not exist in {owner}/{repo}", status=404)
        _raise_for(response, f"read branch {branch} of {owner}/{repo}")
        return str(_dig(response, "object", "sha"))

    def _create_branch(self, owner: str, repo: str, branch: str, sha: str) -> None:
        ref_url = self._ref_url(owner, repo, "ref", branch)

        def landed() -> Response | None:
            current = self._transport.request("GET", ref_url)
            if current.status == 200 and isinstance(current.data, dict):
                target = current.data.get("object")
                if isinstance(target, dict) and target.get("sha") == sha:
                    return current
            return None

        response = self._transport.request(
            "POST",
            self._repo_url(owner, repo, "git", "refs"),
            {"ref": f"refs/heads/{branch}", "sha": sha},
            idempotent=False,
            reconcile=landed,
        )
        _raise_for(response, f"create branch {branch} in {owner}/{repo}", not_found=RepositoryNotFound)

    def _put_file(
        self, owner: str, repo: str, branch: str, path: str, text: str, message: str, *, parent: str
    ) -> str:
        """Commit `text` at `path` on `branch` (whose tip is `parent`); returns the new tip."""
        url = self._repo_url(owner, repo, "contents", path)
        payload: dict[str, str] = {
            "message": message,
            "content": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "branch": branch,
        }

        def landed() -> Response | None:
            tip = self._branch_sha(owner, repo, branch)
            return Response(status=200, data={"commit": {"sha": tip}}) if tip != parent else None

        response = self._transport.request("PUT", url, payload, idempotent=False, reconcile=landed)
        if response.status == 422 and '"sha"' in response.message:
            # The file exists on the branch already: replacing it needs its blob sha.
            existing = self._transport.request("GET", f"{url}?{urlencode({'ref': branch})}")
            _raise_for(existing, f"read {path} on {branch} of {owner}/{repo}")
            payload["sha"] = str(_dig(existing, "sha"))
            response = self._transport.request("PUT", url, payload, idempotent=False, reconcile=landed)
        _raise_for(response, f"commit {path} to {branch} of {owner}/{repo}")
        return str(_dig(response, "commit", "sha"))

    def _create_pull(
        self, owner: str, repo: str, branch: str, base_branch: str, title: str, body: str
    ) -> PullRequest:
        def landed() -> Response | None:
            opened = self._open_pulls_for(owner, repo, branch)
            return Response(status=201, data=opened[0]) if opened else None

        response = self._transport.request(
            "POST",
            self._repo_url(owner, repo, "pulls"),
            {"title": title, "head": branch, "base": base_branch, "body": body},
            idempotent=False,
            reconcile=landed,
        )
        _raise_for(response, f"open a pull request from {branch} in {owner}/{repo}")
        return _pull_from_rest(response)

    # ---- helpers ------------------------------------------------------------------------------------------

    def _open_pulls_for(self, owner: str, repo: str, branch: str) -> list[dict[str, Any]]:
        query = urlencode({"head": f"{owner}:{branch}", "state": "open"})
        response = self._transport.request("GET", f"{self._repo_url(owner, repo, 'pulls')}?{query}")
        _raise_for(response, f"list pull requests of {owner}/{repo}")
        listing = response.data if isinstance(response.data, list) else []
        return [pull for pull in listing if isinstance(pull, dict)]

    def _rollback(self, owner: str, repo: str, branch: str) -> None:
        """Delete a half-made delegation's branch; best effort: failures are logged, not raised."""
        try:
            self.delete_branch(owner, repo, branch)
        except GitHubError:
            log.warning("rollback could not delete branch %s of %s/%s", branch, owner, repo, exc_info=True)

    def _graphql(
        self, document: str, variables: Mapping[str, Any], *, action: str, mutation: bool = False
    ) -> _GraphQLResult:
        """POST one GraphQL document. Queries are retried like GETs; a mutation is never resent blindly."""
        response = self._transport.request(
            "POST", self._graphql_url, {"query": document, "variables": variables}, idempotent=not mutation
        )
        _raise_for(response, action)
        payload = response.data if isinstance(response.data, dict) else {}
        errors = [error for error in payload.get("errors") or [] if isinstance(error, dict)]
        data = payload.get("data")
        if not isinstance(data, dict):
            raise _graphql_error(errors, action, None)
        return _GraphQLResult(data=data, errors=errors)

    def _repo_url(self, owner: str, repo: str, *rest: str) -> str:
        tail = "".join("/" + quote(part, safe="/") for part in rest)
        return f"{self._api_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}{tail}"

    def _ref_url(self, owner: str, repo: str, kind: str, branch: str) -> str:
        """REST URL of a branch ref: kind "ref" (read) or "refs" (update/delete)."""
        return f"{self._repo_url(owner, repo, 'git', kind)}/heads/{quote(branch, safe='/')}"


@dataclass(frozen=True)
class _GraphQLResult:
    data: dict[str, Any]
    errors: list[dict[str, Any]]


def _require_files(files: Mapping[str, str]) -> None:
    if not files:
        raise ValueError("files must name at least one file to commit")


def _raise_for(response: Response, action: str, *, not_found: type[GitHubError] = GitHubRejected) -> None:
    """Raise the typed error for a non-2xx answer (the transport already raised for 5xx and rate limits)."""
    status = response.status
    if 200 <= status < 300:
        return
    text = f"{action}: GitHub answered {status}: {response.message}{_validation_details(response)}"
    if status in (401, 403):
        raise GitHubAuthError(text, status=status)
    if status == 404:
        raise not_found(text, status=status)
    if status == 422 and "reference already exists" in response.message.lower():
        raise BranchAlreadyExists(text, status=status)
    if status == 422 and "reference update failed" in response.message.lower():
        raise BranchConflict(text, status=status)
    raise GitHubRejected(text, status=status)


def _validation_details(response: Response) -> str:
    """GitHub's 422 `errors` list (field, code, message) as one readable suffix."""
    errors = response.data.get("errors") if isinstance(response.data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if isinstance(error, dict):
            fallback = f"{error.get('field', '?')} {error.get('code', 'invalid')}"
            parts.append(str(error.get("message") or fallback))
        else:
            parts.append(str(error))
    return f" ({'; '.join(parts)})" if parts else ""


def _graphql_error(errors: list[dict[str, Any]], action: str, field_name: str | None) -> GitHubError:
    """The typed error for GraphQL `errors` that made top-level field `field_name` fail."""
    kinds = {str(error.get("type") or "") for error in errors}
    messages = "; ".join(str(error.get("message", "")) for error in errors) or "no result, no error reported"
    text = f"{action}: {messages}"
    if "RATE_LIMITED" in kinds:
        return GitHubRateLimited(text, status=None)
    if "FORBIDDEN" in kinds:
        return GitHubAuthError(text, status=None)
    if "NOT_FOUND" in kinds and field_name == "repository":
        return RepositoryNotFound(text, status=None)
    if field_name == "createRef" and "already exists" in messages.lower():
        return BranchAlreadyExists(text, status=None)
    if field_name == "createRef" and "reference update failed" in messages.lower():
        return BranchConflict(text, status=None)
    return GitHubRejected(text, status=None)


def _pull_from_rest(response: Response) -> PullRequest:
    return PullRequest(
        number=int(_dig(response, "number")),
        html_url=str(_dig(response, "html_url")),
        head_sha=str(_dig(response, "head", "sha")),
        branch=str(_dig(response, "head", "ref")),
        base_branch=str(_dig(response, "base", "ref")),
        title=str(response.data.get("title") or "") if isinstance(response.data, dict) else "",
    )


def _dig(source: Response | Mapping[str, Any], *keys: str) -> Any:
    """`source[k1][k2]...`; a missing key means GitHub answered something unexpected (GitHubUnavailable)."""
    value: Any = source.data if isinstance(source, Response) else source
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            raise GitHubUnavailable(f"unexpected answer from GitHub: no '{'.'.join(keys)}'", status=None)
        value = value[key]
    return value
