"""The delegate use case: a validated task becomes a branch with TASK.md, a PR, and a queued job.

No PR without its job, never two PRs for one request. Before the first GitHub write the delegation's intent
is recorded (owner, repository, the branch names it will try, the job to create). A request then either
completes (PR record and job written, intent marked done) or stops half-way (process killed, records down);
`settle` finishes or undoes such an intent from what GitHub shows for its branches: an open PR gets its job,
a branch without a PR is deleted, a second PR (which a lost answer could leave) is closed with a comment and
its branch deleted. The reconciler (`lambda_src.reconcile_handler`) settles stale intents on a schedule; a
retry with the same Idempotency-Key settles the first attempt's intent before anything new is created.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.errors import DelegationFailed, OwnerNotAllowed, RepositoryApiUrlRefused
from lambda_src.github.client import GitHubClient, PullRequest
from lambda_src.github.errors import BranchAlreadyExists, GitHubError
from lambda_src.identity import Caller
from lambda_src.models import DelegateRequest
from lambda_src.records.models import (
    DelegationIntent,
    Job,
    JobStatus,
    PullRequestRecord,
    TimelineEntry,
    utc_now_iso,
)
from lambda_src.records.store import DelegationExists, JobStore
from lambda_src.settings import ApiSettings
from lambda_src.taskdoc import TASK_FILE, TaskText, render_issue_body, render_pr_body, render_task_md

log = logging.getLogger(__name__)

BRANCH_SUFFIX_ATTEMPTS = 3
# Hosts that stand in for github.com: a deployment whose GitHub API is here accepts the prototype's
# `repositoryApiUrl: https://api.github.com` (the local forge listens on loopback).
_GITHUB_COM_HOSTS = frozenset({"api.github.com", "github.com"})
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DUPLICATE_PR_COMMENT = (
    "AIPM closed this pull request: it duplicates pull request #{kept}, which was opened for the same "
    "request and carries its job. The branch is deleted."
)


@dataclass(frozen=True)
class Delegation:
    job: Job
    pull_request: PullRequest
    timestamp_ms: int


@dataclass(frozen=True)
class TaskPosted:
    """An issue opened (`type` "issue") or a comment posted (`type` "comment"): no job is started."""

    type: str
    id: int
    html_url: str
    number: int
    confirmation_code: str


@dataclass(frozen=True)
class Settled:
    """What settling an intent found and did: the PR kept (with its job) or None (nothing left behind)."""

    pull_request: PullRequest | None
    job: Job | None
    closed: list[int]
    deleted_branches: list[str]


def intent_id_for(caller_id: str, idempotency_key: str | None) -> str:
    """One intent per (caller, Idempotency-Key); a request without a key gets its own."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{caller_id}\0{idempotency_key}".encode()).hexdigest()


class DelegationService:
    """Creates delegations and settles half-made ones. One instance per Lambda container."""

    def __init__(
        self,
        settings: ApiSettings,
        store: JobStore,
        github: GitHubClient,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._settings = settings
        self._store = store
        self._github = github
        self._clock_ms = clock_ms

    # ---- checks every target shares -------------------------------------------------------------------

    def check(self, request: DelegateRequest) -> None:
        """Refusals that need the deployment's settings. Raises OwnerNotAllowed, RepositoryApiUrlRefused."""
        self.check_owner(request.owner)
        if request.repository_api_url and not self._same_github(request.repository_api_url):
            raise RepositoryApiUrlRefused(
                "repositoryApiUrl names another GitHub than this deployment's "
                f"({self._settings.github_api_url})",
                field="repositoryApiUrl",
            )

    def check_owner(self, owner: str) -> None:
        """Raises OwnerNotAllowed unless ALLOWED_OWNERS is empty or lists `owner`."""
        allowed = self._settings.allowed_owners
        if allowed and owner.lower() not in allowed:
            raise OwnerNotAllowed(f"owner '{owner}' is not enabled for delegation", field="owner")

    def _same_github(self, url: str) -> bool:
        given = urlsplit(url)
        ours = urlsplit(self._settings.github_api_url)
        if given.scheme not in ("http", "https") or not given.hostname:
            return False
        if given.hostname.lower() == (ours.hostname or "").lower() and given.port == ours.port:
            return True
        github_com = given.hostname.lower() in _GITHUB_COM_HOSTS and given.port is None
        return github_com and ((ours.hostname or "") in _GITHUB_COM_HOSTS | _LOCAL_HOSTS)

    # ---- target "pr": the delegation --------------------------------------------------------------------

    def delegate(
        self,
        request: DelegateRequest,
        *,
        caller: Caller,
        idempotency_key: str | None = None,
        source: str = "api",
        intent_id: str | None = None,
        fixes_issue: int | None = None,
    ) -> Delegation:
        """Open the PR and queue the job, recording the intent first.

        `intent_id`: the intent to use instead of the one of (caller, `idempotency_key`) — a delegation of a
        GitHub issue is one per issue whoever labels it. `fixes_issue`: the issue the PR answers (its body
        then says `Fixes #<n>`, outside the quoted text).
        Raises OwnerNotAllowed, RepositoryApiUrlRefused, GitHubError subclasses (nothing was created),
        DelegationFailed (the records could not be written; the branch, and with it the PR, was removed).
        """
        self.check(request)
        keyed = idempotency_key is not None or intent_id is not None
        intent_id = intent_id or intent_id_for(caller.id, idempotency_key)
        existing = self._store.get_intent(intent_id) if keyed else None
        if existing is None:
            job_id = uuid.uuid4().hex
            intent = self._new_intent(intent_id, request, job_id, caller, source, fixes_issue)
            if not self._store.put_intent(intent):
                existing = self._store.get_intent(intent_id)
        if existing is not None:
            return self._resume(existing, request)
        return self._open(intent, request)

    def _new_intent(
        self,
        intent_id: str,
        request: DelegateRequest,
        job_id: str,
        caller: Caller,
        source: str,
        fixes_issue: int | None = None,
    ) -> DelegationIntent:
        now_ms = self._clock_ms()
        job = {
            "job_id": job_id,
            "repo": f"{request.owner}/{request.repo}",
            "owner": request.owner,
            "repo_name": request.repo,
            "task_title": request.task_title,
            "max_attempts": self._settings.job_max_attempts,
            "requested_by": caller.name,
            "requester_id": caller.id,
            "source": source,
            "story_id": request.story_id,
            "story_title": request.story_title or None,
            "repository_api_url": request.repository_api_url or None,
            "fixes_issue": fixes_issue,
            "ttl": now_ms // 1000 + self._settings.record_ttl_days * 86_400,
        }
        return DelegationIntent(
            intent_id=intent_id,
            created_at=utc_now_iso(),
            created_at_ms=now_ms,
            owner=request.owner,
            repo_name=request.repo,
            branches=[f"{request.branch_name}-{now_ms}"],
            job=job,
            ttl=now_ms // 1000 + self._settings.idempotency_ttl_s + 86_400,
        )

    def _open(self, intent: DelegationIntent, request: DelegateRequest) -> Delegation:
        job_id = str(intent.job["job_id"])
        try:
            pull_request = self._open_pull_request(intent, request, job_id)
        except GitHubError:
            self._store.delete_intent(intent.intent_id)  # nothing was created: the key is free again
            raise
        return self._finish(intent, pull_request)

    def _open_pull_request(
        self, intent: DelegationIntent, request: DelegateRequest, job_id: str
    ) -> PullRequest:
        """The PR on the intent's newest branch `<branchName>-<epoch ms>` (another suffix if it is taken)."""
        task = _task_text(request)
        files = {TASK_FILE: render_task_md(task, job_id=job_id)}
        fixes = intent.job.get("fixes_issue")
        body = render_pr_body(task, job_id=job_id, fixes=fixes if isinstance(fixes, int) else None)
        opener = (
            self._github.open_task_pull_request_rest
            if self._settings.github_protocol == "rest"
            else self._github.open_task_pull_request
        )
        branch = intent.branches[-1]
        last_error: BranchAlreadyExists | None = None
        for attempt in range(BRANCH_SUFFIX_ATTEMPTS):
            if attempt:
                branch = f"{request.branch_name}-{self._clock_ms()}"
                self._store.add_intent_branch(intent.intent_id, branch)
            try:
                return opener(
                    owner=request.owner,
                    repo=request.repo,
                    base_branch=request.base_branch,
                    branch=branch,
                    files=files,
                    commit_message=f"AIPM task {job_id}: add {TASK_FILE}",
                    title=request.pr_title,
                    body=body,
                )
            except BranchAlreadyExists as err:
                last_error = err
        assert last_error is not None
        raise last_error

    def _finish(self, intent: DelegationIntent, pr: PullRequest) -> Delegation:
        """Write the PR record and the job for an open PR, then mark the intent done."""
        job = self._job(intent, pr)
        try:
            self._store.create_delegation(job, self._pr_record(intent, pr, job))
        except DelegationExists:
            if not self._store.job_exists(job.job_id):
                raise DelegationFailed("the job could not be recorded; try again") from None
            job = self._store.get_job(job.job_id)
        except (ClientError, BotoCoreError) as err:
            log.error(
                "records not written; removing the branch", extra={"job_id": job.job_id, "error": str(err)}
            )
            self._remove_branch(intent.owner, intent.repo_name, pr.branch)
            raise DelegationFailed(
                "the job could not be recorded; nothing was left behind, try again"
            ) from err
        self._store.complete_intent(intent.intent_id, pr.number)
        log.info("delegated", extra={"job_id": job.job_id, "pr": pr.number, "branch": pr.branch})
        return Delegation(job=job, pull_request=pr, timestamp_ms=_suffix_ms(pr.branch))

    def _resume(self, intent: DelegationIntent, request: DelegateRequest) -> Delegation:
        """A retry of a request whose intent exists: its result if it completed, else settle and go on."""
        job_id = str(intent.job["job_id"])
        if intent.status == "done" and self._store.job_exists(job_id):
            job = self._store.get_job(job_id)
            pr = PullRequest(
                number=job.pr_number,
                html_url=job.pr_url,
                head_sha="",
                branch=job.branch_name,
                base_branch=job.base_branch,
            )
            return Delegation(job=job, pull_request=pr, timestamp_ms=_suffix_ms(job.branch_name))
        settled = self.settle(intent, complete_when_empty=False)
        if settled.pull_request is not None and settled.job is not None:
            return Delegation(
                job=settled.job,
                pull_request=settled.pull_request,
                timestamp_ms=_suffix_ms(settled.pull_request.branch),
            )
        log.info("resuming a delegation that stopped before its PR", extra={"job_id": job_id})
        branch = f"{request.branch_name}-{self._clock_ms()}"
        self._store.add_intent_branch(intent.intent_id, branch)
        resumed = intent.model_copy(update={"branches": [*intent.branches, branch]})
        return self._open(resumed, request)

    # ---- settling half-made delegations ----------------------------------------------------------------

    def settle(self, intent: DelegationIntent, *, complete_when_empty: bool = True) -> Settled:
        """Finish or undo `intent` from what GitHub shows for its branches (idempotent).

        The first open PR on one of its branches is kept and gets its job (unless it has one); any other
        PR is closed with a comment saying why; branches without a kept PR are deleted. With nothing kept
        and `complete_when_empty`, the intent is removed. Raises GitHubError, botocore errors (try later).
        """
        owner, repo = intent.owner, intent.repo_name
        kept: PullRequest | None = None
        closed: list[int] = []
        deleted: list[str] = []
        for branch in intent.branches:
            pull = self._github.find_open_pull_request(owner, repo, branch)
            if pull is not None and kept is None:
                kept = pull
                continue
            if pull is not None:
                assert kept is not None
                self._github.comment_on_pull_request(
                    owner, repo, pull.number, DUPLICATE_PR_COMMENT.format(kept=kept.number)
                )
                self._github.close_pull_request(owner, repo, pull.number)
                closed.append(pull.number)
            if self._github.branch_exists(owner, repo, branch):
                self._github.delete_branch(owner, repo, branch)
                deleted.append(branch)
        if kept is not None:
            delegation = self._finish(intent, kept)
            return Settled(pull_request=kept, job=delegation.job, closed=closed, deleted_branches=deleted)
        if complete_when_empty:
            self._store.delete_intent(intent.intent_id)
        return Settled(pull_request=None, job=None, closed=closed, deleted_branches=deleted)

    # ---- targets "new-issue" and a comment on `targetNumber` (the prototype's; no job) ------------------

    def post_task(self, request: DelegateRequest) -> TaskPosted:
        """Open an issue holding the task, or comment it on issue/PR `targetNumber`, as the prototype did.

        Raises OwnerNotAllowed, RepositoryApiUrlRefused, GitHubError subclasses.
        """
        self.check(request)
        body = render_issue_body(_task_text(request))
        code = secrets.token_hex(3).upper()
        if request.comments_on_existing:
            assert request.target_number is not None
            comment = self._github.comment_on_issue(request.owner, request.repo, request.target_number, body)
            return TaskPosted(
                type="comment",
                id=int(comment.get("id") or 0),
                html_url=str(comment.get("html_url") or ""),
                number=request.target_number,
                confirmation_code=code,
            )
        issue = self._github.create_issue(request.owner, request.repo, request.task_title, body)
        return TaskPosted(
            type="issue",
            id=int(issue.get("id") or 0),
            html_url=str(issue.get("html_url") or ""),
            number=int(issue.get("number") or 0),
            confirmation_code=code,
        )

    def latest_comment(self, owner: str, repo: str, number: int) -> tuple[int, dict[str, Any] | None]:
        """(how many comments, the newest) on issue/PR `number`: the prototype's status endpoint."""
        comments = self._github.issue_comments(owner, repo, number)
        return len(comments), (comments[-1] if comments else None)

    # ---- records -----------------------------------------------------------------------------------------

    def _job(self, intent: DelegationIntent, pr: PullRequest) -> Job:
        now = utc_now_iso()
        return Job.model_validate(
            {
                **intent.job,
                "status": JobStatus.QUEUED,
                "branch_name": pr.branch,
                "base_branch": pr.base_branch,
                "pr_number": pr.number,
                "pr_url": pr.html_url,
                "created_at": now,
                "updated_at": now,
                "timeline": [
                    TimelineEntry(step="queued", at=now, detail=f"PR #{pr.number} opened on {pr.branch}")
                ],
            }
        )

    def _pr_record(self, intent: DelegationIntent, pr: PullRequest, job: Job) -> PullRequestRecord:
        return PullRequestRecord(
            owner=intent.owner,
            repo_name=intent.repo_name,
            number=pr.number,
            html_url=pr.html_url,
            branch_name=pr.branch,
            base_branch=pr.base_branch,
            job_id=job.job_id,
            created_at=job.created_at,
            requested_by=job.requested_by,
            requester_id=job.requester_id,
            story_id=job.story_id,
            story_title=job.story_title,
            ttl=job.ttl,
        )

    def _remove_branch(self, owner: str, repo: str, branch: str) -> None:
        try:
            self._github.delete_branch(owner, repo, branch)
        except GitHubError:
            log.exception("could not remove branch %s after a failed delegation", branch)


def _task_text(request: DelegateRequest) -> TaskText:
    return TaskText(
        title=request.task_title,
        objective=request.objective,
        constraints=request.constraints,
        acceptance_criteria=request.acceptance_criteria,
    )


def _suffix_ms(branch: str) -> int:
    """The epoch-ms suffix the delegation appended to a branch name (0 if there is none)."""
    tail = branch.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
