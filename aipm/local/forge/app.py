"""The forge's domain: repositories, refs, commits, pull requests and comments, shared by REST and GraphQL.

Every change to a repository happens under that repository's lock; refs move only with an old-value check.
Failures are ForgeError carrying the HTTP status and message GitHub would answer with.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aipm.local.forge.faults import FaultPlan
from aipm.local.forge.gitrepo import (
    FORGE_LOGIN,
    BareRepo,
    GitError,
    RefConflictError,
    is_valid_branch_name,
)
from aipm.local.forge.state import (
    CommentRecord,
    ForgeState,
    IssueRecord,
    PullRecord,
    RepoRecord,
    ReviewCommentRecord,
    ReviewRecord,
    utc_now,
)
from aipm.local.forge.webhooks import WebhookSender

DOCS_URL = "https://docs.github.com/rest"
MAX_REF_BYTES = 255  # GitHub refuses longer ref names ("Reference update failed")
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class ForgeError(Exception):
    """An answer GitHub would give instead of a result: status, message, optional validation errors."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        documentation_url: str = DOCS_URL,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = [dict(error) for error in errors]
        self.documentation_url = documentation_url


def not_found() -> ForgeError:
    return ForgeError(404, "Not Found")


def validation_failed(*errors: Mapping[str, str]) -> ForgeError:
    return ForgeError(422, "Validation Failed", errors=errors)


def node_id(kind: str, key: str) -> str:
    """An opaque global id like GitHub's (e.g. R_..., PR_...), reversible by parse_node_id."""
    return f"{kind}_{base64.urlsafe_b64encode(key.encode('utf-8')).decode('ascii').rstrip('=')}"


def parse_node_id(value: str, kind: str) -> str | None:
    """The key inside a node id of `kind`, or None if `value` is not one."""
    prefix = f"{kind}_"
    if not value.startswith(prefix):
        return None
    encoded = value[len(prefix) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Urls:
    """Where the running forge answers."""

    base: str

    @property
    def api(self) -> str:
        return f"{self.base}/api/v3"


@dataclass(frozen=True)
class RepoHandle:
    owner: str
    name: str
    git: BareRepo
    lock: threading.RLock

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class ForgeApp:
    """Repositories under `root` (`<root>/<owner>/<repo>.git`) plus the forge's state file."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.state = ForgeState(root / "forge-state.json")
        self.faults = FaultPlan()
        self.webhooks = WebhookSender()
        self.users: dict[str, str] = {}  # login -> token of the people besides the forge's own token
        self.urls = Urls(base="http://127.0.0.1")
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # ---- repositories ---------------------------------------------------------------------------------

    def create_repository(
        self, owner: str, name: str, *, default_branch: str, files: Mapping[str, str]
    ) -> Path:
        """A new bare repository with one commit of `files`. ValueError for bad names, FileExistsError."""
        if not _valid_names(owner, name):
            raise ValueError(f"invalid repository name {owner}/{name}")
        path = self.repo_path(owner, name)
        with self._lock_for(f"{owner}/{name}"):
            try:
                BareRepo.create(path, default_branch=default_branch, files=files)
            except GitError as err:
                raise ValueError(str(err)) from err
            if self.state.repo(owner, name) is None:
                self.state.add_repo(owner, name)
        return path

    def repo_path(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    def repository(self, owner: str, name: str) -> RepoHandle:
        """The repository `owner/name`; ForgeError 404 if it does not exist (or the name is not valid)."""
        if not _valid_names(owner, name) or not (self.repo_path(owner, name) / "HEAD").is_file():
            raise not_found()
        if self.state.repo(owner, name) is None:
            self.state.add_repo(owner, name)
        return RepoHandle(
            owner, name, BareRepo(self.repo_path(owner, name)), self._lock_for(f"{owner}/{name}")
        )

    def repository_by_node_id(self, value: str) -> RepoHandle | None:
        full_name = parse_node_id(value, "R")
        if full_name is None or "/" not in full_name:
            return None
        owner, name = full_name.split("/", 1)
        try:
            return self.repository(owner, name)
        except ForgeError:
            return None

    def repo_id(self, repo: RepoHandle) -> int:
        return self._records(repo).id

    # ---- refs and commits -----------------------------------------------------------------------------

    def create_ref(self, repo: RepoHandle, ref: str, sha: str) -> None:
        """Create `ref` (refs/heads/...) at commit `sha`, refused as GitHub refuses it (all 422):
        a bad name ("<ref> is not a valid ref name."), an unknown sha ("Object does not exist"), an existing
        ref ("Reference already exists"), and a ref git cannot store ("Reference update failed"): longer
        than 255 bytes, or a branch at a parent path (`release` blocks `release/fix`) or under it.
        """
        if not ref.startswith("refs/heads/") or not is_valid_branch_name(ref[len("refs/heads/") :]):
            raise ForgeError(422, f"{ref} is not a valid ref name.")
        if len(ref.encode("utf-8")) > MAX_REF_BYTES:
            raise ForgeError(422, "Reference update failed")
        branch = ref[len("refs/heads/") :]
        with repo.lock:
            if repo.git.resolve_commit(sha) != sha:
                raise ForgeError(422, "Object does not exist")
            if repo.git.branch_tip(branch) is None and _path_conflict(branch, repo.git.branches()):
                raise ForgeError(422, "Reference update failed")
            try:
                repo.git.create_ref(ref, sha)
            except RefConflictError as err:
                if repo.git.branch_tip(branch) is None:
                    raise ForgeError(422, "Reference update failed") from err
                raise ForgeError(422, "Reference already exists") from err

    def delete_branch(self, repo: RepoHandle, branch: str) -> None:
        """Delete the branch; its open pull requests are closed. 422 "Reference does not exist" if missing."""
        with repo.lock:
            tip = repo.git.branch_tip(branch)
            if tip is None:
                raise ForgeError(422, "Reference does not exist")
            try:
                repo.git.delete_ref(f"refs/heads/{branch}", tip)
            except RefConflictError as err:
                raise ForgeError(409, "Reference update failed") from err
            with self.state.lock:
                for pull in self._records(repo).pulls:
                    if pull.head_ref == branch and pull.state == "open":
                        pull.head_sha = tip
                        pull.state = "closed"
                        pull.closed_at = pull.updated_at = utc_now()
                self.state.save()

    def commit_files(
        self,
        repo: RepoHandle,
        *,
        branch: str,
        additions: Mapping[str, bytes],
        deletions: Sequence[str] = (),
        message: str,
        expected_head: str | None = None,
    ) -> str:
        """One commit on `branch` writing `additions` and removing `deletions`; returns its sha.

        404 if the branch is missing, 409 if it is not at `expected_head`, 422 for invalid paths.
        """
        with repo.lock:
            parent = repo.git.branch_tip(branch)
            if parent is None:
                raise ForgeError(404, f"Branch {branch} not found")
            if expected_head is not None and parent != expected_head:
                raise ForgeError(
                    409, f'Expected branch to point to "{expected_head}" but it did not. Pull and try again.'
                )
            try:
                commit = repo.git.commit_tree(
                    parent=parent, additions=additions, deletions=deletions, message=message
                )
                repo.git.update_ref(f"refs/heads/{branch}", commit, parent)
            except RefConflictError as err:
                raise ForgeError(409, f"{branch} moved while committing; pull and try again.") from err
            except GitError as err:
                raise ForgeError(422, f"Invalid request: {err}") from err
            return commit

    def put_file(
        self, repo: RepoHandle, *, path: str, content: bytes, message: str, branch: str, sha: str | None
    ) -> tuple[str, bool]:
        """Create or replace one file (the contents API); returns (commit sha, created)."""
        with repo.lock:
            tip = repo.git.branch_tip(branch)
            if tip is None:
                raise ForgeError(404, f"Branch {branch} not found")
            existing = repo.git.entry(tip, path)
            if existing is not None and existing.kind != "blob":
                raise ForgeError(422, f"Invalid request.\n\n{path} is a directory.")
            if existing is not None and sha is None:
                raise ForgeError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
            if existing is not None and sha != existing.oid:
                raise ForgeError(409, f"{path} does not match {sha}")
            commit = self.commit_files(repo, branch=branch, additions={path: content}, message=message)
            return commit, existing is None

    # ---- pull requests and comments -------------------------------------------------------------------

    def create_pull(
        self, repo: RepoHandle, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRecord:
        """Open a pull request head -> base ('owner:branch' accepted). 422 as GitHub validates."""
        if ":" in head:
            head_owner, head = head.split(":", 1)
            if head_owner != repo.owner:
                raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if not title.strip():
            raise validation_failed({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        with repo.lock:
            head_sha = repo.git.branch_tip(head)
            base_sha = repo.git.branch_tip(base)
            if head_sha is None:
                raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
            if base_sha is None:
                raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
            records = self._records(repo)
            if any(p.head_ref == head and p.base_ref == base and p.state == "open" for p in records.pulls):
                message = f"A pull request already exists for {repo.owner}:{head}."
                raise validation_failed({"resource": "PullRequest", "code": "custom", "message": message})
            if repo.git.count_commits(base_sha, head_sha) == 0:
                message = f"No commits between {base} and {head}"
                raise validation_failed({"resource": "PullRequest", "code": "custom", "message": message})
            with self.state.lock:
                now = utc_now()
                pull = PullRecord(
                    number=records.next_number,
                    id=self.state.next_id(),
                    title=title,
                    body=body,
                    head_ref=head,
                    base_ref=base,
                    head_sha=head_sha,
                    base_sha=base_sha,
                    draft=draft,
                    state="open",
                    created_at=now,
                    updated_at=now,
                )
                records.next_number += 1
                records.pulls.append(pull)
                self.state.save()
            return pull

    def pulls(
        self, repo: RepoHandle, *, state: str = "open", head: str | None = None, base: str | None = None
    ) -> list[PullRecord]:
        """Pull requests filtered like GET /pulls (state open|closed|all, head 'owner:branch', base)."""
        if head is not None and ":" in head:
            head_owner, head = head.split(":", 1)
            if head_owner != repo.owner:
                return []
        with self.state.lock:
            return [
                self._refreshed(repo, pull)
                for pull in self._records(repo).pulls
                if state in ("all", pull.state)
                and (head is None or pull.head_ref == head)
                and (base is None or pull.base_ref == base)
            ]

    def pull(self, repo: RepoHandle, number: int) -> PullRecord:
        """Pull request `number` with its head sha read from git now; 404 if there is none."""
        with self.state.lock:
            found = self._records(repo).pull(number)
            if found is None:
                raise not_found()
            return self._refreshed(repo, found)

    def close_pull(self, repo: RepoHandle, number: int) -> PullRecord:
        """Close pull request `number` (PATCH state=closed); closing a closed one changes nothing."""
        with self.state.lock:
            pull = self.pull(repo, number)
            if pull.state == "open":
                pull.state = "closed"
                pull.closed_at = pull.updated_at = utc_now()
                self.state.save()
            return pull

    def create_issue(self, repo: RepoHandle, *, title: str, body: str) -> IssueRecord:
        """Open an issue (numbers are shared with pull requests). 422 without a title, as GitHub."""
        if not title.strip():
            raise validation_failed({"resource": "Issue", "field": "title", "code": "missing_field"})
        with self.state.lock:
            records = self._records(repo)
            now = utc_now()
            issue = IssueRecord(
                number=records.next_number,
                id=self.state.next_id(),
                title=title,
                body=body,
                state="open",
                created_at=now,
                updated_at=now,
            )
            records.next_number += 1
            records.issues.append(issue)
            self.state.save()
            return issue

    def issues(self, repo: RepoHandle) -> list[IssueRecord]:
        with self.state.lock:
            return list(self._records(repo).issues)

    def add_comment(
        self, repo: RepoHandle, number: int, body: str, *, author: str = FORGE_LOGIN
    ) -> CommentRecord:
        """Comment on issue or pull request `number`; 404 if there is neither."""
        if not body.strip():
            raise validation_failed({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        with self.state.lock:
            thread = self._thread(repo, number)
            now = utc_now()
            comment = CommentRecord(
                id=self.state.next_id(), body=body, created_at=now, updated_at=now, author=author
            )
            thread.append(comment)
            self.state.save()
            return comment

    def comments(self, repo: RepoHandle, number: int, *, since: str | None = None) -> list[CommentRecord]:
        with self.state.lock:
            found = self._thread(repo, number)
            return [c for c in found if since is None or c.updated_at >= since]

    def add_review_comment(
        self,
        repo: RepoHandle,
        number: int,
        *,
        body: str,
        path: str,
        line: int,
        author: str,
        in_reply_to: int | None = None,
    ) -> ReviewCommentRecord:
        """A comment on line `line` of `path` in pull request `number`'s head (or a reply in a thread: its
        path and line are the thread's). 422 when the file is not in the head or the body is empty."""
        if not body.strip():
            raise validation_failed(
                {"resource": "PullRequestReviewComment", "field": "body", "code": "missing_field"}
            )
        with self.state.lock:
            pull = self.pull(repo, number)
            if in_reply_to is not None:
                first = next((c for c in pull.review_comments if c.id == in_reply_to), None)
                if first is None:
                    raise not_found()
                path, line, in_reply_to = first.path, first.line, first.in_reply_to_id or first.id
            elif repo.git.entry(pull.head_sha, path) is None or line < 1:
                raise validation_failed(
                    {"resource": "PullRequestReviewComment", "field": "path", "code": "invalid"}
                )
            now = utc_now()
            comment = ReviewCommentRecord(
                id=self.state.next_id(),
                body=body,
                path=path,
                line=line,
                commit_id=pull.head_sha,
                author=author,
                created_at=now,
                updated_at=now,
                in_reply_to_id=in_reply_to,
            )
            pull.review_comments.append(comment)
            self.state.save()
            return comment

    def review_comments(self, repo: RepoHandle, number: int) -> list[ReviewCommentRecord]:
        with self.state.lock:
            return list(self.pull(repo, number).review_comments)

    def add_review(
        self, repo: RepoHandle, number: int, *, body: str, event: str, author: str
    ) -> ReviewRecord:
        """Submit a review (`event` APPROVE, REQUEST_CHANGES or COMMENT); 422 otherwise, or without a body
        where GitHub needs one (REQUEST_CHANGES, COMMENT)."""
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
        if event not in states or (event != "APPROVE" and not body.strip()):
            raise validation_failed({"resource": "PullRequestReview", "field": "event", "code": "invalid"})
        with self.state.lock:
            pull = self.pull(repo, number)
            review = ReviewRecord(
                id=self.state.next_id(),
                body=body,
                state=states[event],
                commit_id=pull.head_sha,
                author=author,
                submitted_at=utc_now(),
            )
            pull.reviews.append(review)
            self.state.save()
            return review

    def add_labels(self, repo: RepoHandle, number: int, labels: list[str]) -> tuple[IssueRecord, list[str]]:
        """Add labels to issue `number`; returns the issue and the labels that are new on it. 404."""
        with self.state.lock:
            issue = self._records(repo).issue(number)
            if issue is None:
                raise not_found()
            added = [name for name in dict.fromkeys(labels) if name not in issue.labels]
            issue.labels.extend(added)
            issue.updated_at = utc_now()
            self.state.save()
            return issue, added

    def add_collaborator(self, repo: RepoHandle, login: str) -> None:
        with self.state.lock:
            records = self._records(repo)
            if login not in records.collaborators:
                records.collaborators.append(login)
                self.state.save()

    def association(self, repo: RepoHandle, login: str) -> str:
        """GitHub's `author_association` of `login` on `repo`: OWNER (the owner, and the forge's own
        login, which owns every repository here), COLLABORATOR, or NONE."""
        if login in (repo.owner, FORGE_LOGIN):
            return "OWNER"
        with self.state.lock:
            return "COLLABORATOR" if login in self._records(repo).collaborators else "NONE"

    def is_pull(self, repo: RepoHandle, number: int) -> bool:
        with self.state.lock:
            return self._records(repo).pull(number) is not None

    def _thread(self, repo: RepoHandle, number: int) -> list[CommentRecord]:
        records = self._records(repo)
        issue = records.issue(number)
        if issue is not None:
            return issue.comments
        return self.pull(repo, number).comments

    def _refreshed(self, repo: RepoHandle, pull: PullRecord) -> PullRecord:
        """The record with head/base sha moved to the branches' current tips (kept if a branch is gone)."""
        pull.head_sha = repo.git.branch_tip(pull.head_ref) or pull.head_sha
        pull.base_sha = repo.git.branch_tip(pull.base_ref) or pull.base_sha
        return pull

    def _records(self, repo: RepoHandle) -> RepoRecord:
        record = self.state.repo(repo.owner, repo.name)
        assert record is not None  # registered by repository()
        return record

    def _lock_for(self, key: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())


def _valid_names(owner: str, name: str) -> bool:
    return bool(_OWNER.match(owner)) and bool(_REPO.match(name)) and name not in (".", "..")


def _path_conflict(branch: str, existing: Iterable[str]) -> bool:
    """Whether an existing branch is a parent path of `branch` or lies under it (git stores refs as paths)."""
    return any(branch.startswith(f"{other}/") or other.startswith(f"{branch}/") for other in existing)
