"""The delegate use case: a validated task becomes a branch with TASK.md, a PR, and a queued job."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.errors import DelegationFailed, OwnerNotAllowed
from lambda_src.github.client import GitHubClient, PullRequest
from lambda_src.github.errors import BranchAlreadyExists, GitHubError
from lambda_src.models import DelegateRequest
from lambda_src.records.models import Job, JobStatus, PullRequestRecord, TimelineEntry, utc_now_iso
from lambda_src.records.store import DelegationExists, JobStore
from lambda_src.settings import ApiSettings
from lambda_src.taskdoc import TASK_FILE, render_pr_body, render_task_md

log = logging.getLogger(__name__)

BRANCH_SUFFIX_ATTEMPTS = 3


@dataclass(frozen=True)
class Delegation:
    job: Job
    pull_request: PullRequest
    timestamp_ms: int


class DelegationService:
    """Creates delegations. One instance per Lambda container."""

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

    def delegate(self, request: DelegateRequest, *, requested_by: str) -> Delegation:
        """Open the PR and queue the job.

        Raises OwnerNotAllowed, GitHubError subclasses (nothing was created), DelegationFailed (the records
        could not be written; the branch, and with it the PR, was removed again).
        """
        allowed = self._settings.allowed_owners
        if allowed and request.owner.lower() not in allowed:
            raise OwnerNotAllowed(f"owner '{request.owner}' is not enabled for delegation", field="owner")
        job_id = uuid.uuid4().hex
        pull_request, timestamp_ms = self._open_pull_request(request, job_id, requested_by)
        job = self._job(request, pull_request, job_id, requested_by)
        try:
            self._store.create_delegation(job, self._pr_record(request, pull_request, job, requested_by))
        except (ClientError, BotoCoreError, DelegationExists) as err:
            log.error("records not written; removing the branch", extra={"job_id": job_id, "error": str(err)})
            self._remove_branch(request, pull_request.branch)
            raise DelegationFailed(
                "the job could not be recorded; nothing was left behind, try again"
            ) from err
        log.info(
            "delegated", extra={"job_id": job_id, "pr": pull_request.number, "branch": pull_request.branch}
        )
        return Delegation(job=job, pull_request=pull_request, timestamp_ms=timestamp_ms)

    def _open_pull_request(
        self, request: DelegateRequest, job_id: str, requested_by: str
    ) -> tuple[PullRequest, int]:
        """The PR on a new branch `<branchName>-<epoch ms>` (another suffix if that one is taken)."""
        files = {TASK_FILE: render_task_md(request, requested_by=requested_by, job_id=job_id)}
        body = render_pr_body(request, job_id=job_id)
        opener = (
            self._github.open_task_pull_request_rest
            if self._settings.github_protocol == "rest"
            else self._github.open_task_pull_request
        )
        last_error: BranchAlreadyExists | None = None
        for _ in range(BRANCH_SUFFIX_ATTEMPTS):
            timestamp_ms = self._clock_ms()
            try:
                pr = opener(
                    owner=request.owner,
                    repo=request.repo,
                    base_branch=request.base_branch,
                    branch=f"{request.branch_name}-{timestamp_ms}",
                    files=files,
                    commit_message=f"feat: {request.task_title}",
                    title=request.pr_title,
                    body=body,
                )
            except BranchAlreadyExists as err:
                last_error = err
                continue
            return pr, timestamp_ms
        assert last_error is not None
        raise last_error

    def _job(self, request: DelegateRequest, pr: PullRequest, job_id: str, requested_by: str) -> Job:
        now = utc_now_iso()
        return Job(
            job_id=job_id,
            status=JobStatus.QUEUED,
            repo=f"{request.owner}/{request.repo}",
            owner=request.owner,
            repo_name=request.repo,
            branch_name=pr.branch,
            base_branch=pr.base_branch,
            pr_number=pr.number,
            pr_url=pr.html_url,
            task_title=request.task_title,
            created_at=now,
            updated_at=now,
            max_attempts=self._settings.job_max_attempts,
            timeline=[TimelineEntry(step="queued", at=now, detail=f"PR #{pr.number} opened on {pr.branch}")],
            requested_by=requested_by,
            ttl=self._ttl(),
        )

    def _pr_record(
        self, request: DelegateRequest, pr: PullRequest, job: Job, requested_by: str
    ) -> PullRequestRecord:
        return PullRequestRecord(
            owner=request.owner,
            repo_name=request.repo,
            number=pr.number,
            html_url=pr.html_url,
            branch_name=pr.branch,
            base_branch=pr.base_branch,
            job_id=job.job_id,
            created_at=job.created_at,
            requested_by=requested_by,
            ttl=job.ttl,
        )

    def _ttl(self) -> int:
        return self._clock_ms() // 1000 + self._settings.record_ttl_days * 86_400

    def _remove_branch(self, request: DelegateRequest, branch: str) -> None:
        try:
            self._github.delete_branch(request.owner, request.repo, branch)
        except GitHubError:
            log.exception("could not remove branch %s after a failed delegation", branch)
