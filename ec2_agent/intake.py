"""The prototype's agent endpoints keep their promise: `/api/process-pr` and `/generate-code` find the PR's
job, or create a durable one from the branch's TASK.md — never an accepted answer for nothing.

The prototype's Lambda posted `{branch, prNumber, taskDetails}` (apps/backend/app.js performDelegation; the
seeds add `owner`, `repo`) to port 8082 `/api/process-pr`, and `{branch, taskDescription, prNumber}` to port
8080 `/generate-code` (seed 000). Here both are served on the processor port. The job is found by PR number
and branch (owner/repo from the body, else from AIPM_DEFAULT_REPOSITORY, else from the PR records); without
one, a job is created for the PR when its branch holds TASK.md. The task is what TASK.md says: the request's
free text (`taskDetails`, `taskDescription`) never reaches the CLI. Jobs created here belong to the agent's
service identity (`service:aipm-agent`) with their source recorded; admins see them in the API.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import GitHubError
from lambda_src.records.models import Job, JobStatus, PullRequestRecord, TimelineEntry, utc_now_iso
from lambda_src.records.store import DelegationExists, JobNotFound, JobStore

log = logging.getLogger(__name__)

SERVICE_ID = "service:aipm-agent"
TASK_FILE = "TASK.md"
RECORD_TTL_S = 90 * 86_400


@dataclass(frozen=True)
class IntakeAnswer:
    """The HTTP status and JSON body an endpoint answers; `job_id` is the job to nudge (if any)."""

    status: int
    body: dict[str, Any]
    job_id: str | None = None


@dataclass(frozen=True)
class IntakeConfig:
    default_repository: tuple[str, str] | None  # (owner, repo) from AIPM_DEFAULT_REPOSITORY
    allowed_owners: frozenset[str]  # empty: any
    max_attempts: int = 3


class JobIntake:
    """Finds or creates the job of a PR named by number and branch."""

    def __init__(
        self,
        store: JobStore,
        github: GitHubClient,
        config: IntakeConfig,
        *,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._github = github
        self._config = config
        self._clock_s = clock_s

    def job_for(
        self, *, pr_number: int, branch: str, owner: str | None, repo: str | None, source: str
    ) -> IntakeAnswer:
        """202 with the job id (found or created), or 403/404/409 with the reason. Never raises for a
        GitHub or records failure: 503 with the reason (nothing half-written: a job and its PR record are
        written together, as the API writes them)."""
        try:
            return self._job_for(pr_number, branch, owner, repo, source)
        except GitHubError as err:
            return _refused(HTTPStatus.SERVICE_UNAVAILABLE, "github_unavailable", f"GitHub: {err.message}")

    def nudge(self, job_id: str, *, pr_number: int, branch: str) -> IntakeAnswer:
        """The dispatcher's nudge for job `job_id`: 202 if it waits or runs, 404 if there is no such job,
        409 if it has ended."""
        try:
            job = self._store.get_job(job_id)
        except JobNotFound:
            return _refused(HTTPStatus.NOT_FOUND, "job_not_found", f"job {job_id} does not exist")
        if job.status.terminal:
            return _refused(
                HTTPStatus.CONFLICT, "job_ended", f"job {job_id} ended {job.status.value}", job_id=job_id
            )
        return _accepted(job, pr_number, branch, created=False)

    def _job_for(
        self, pr_number: int, branch: str, owner: str | None, repo: str | None, source: str
    ) -> IntakeAnswer:
        if (owner is None) != (repo is None):
            return _refused(HTTPStatus.BAD_REQUEST, "invalid_request", "give both owner and repo, or neither")
        if owner is None and self._config.default_repository is not None:
            owner, repo = self._config.default_repository
        if owner is not None and repo is not None:
            if self._config.allowed_owners and owner.lower() not in self._config.allowed_owners:
                return _refused(HTTPStatus.FORBIDDEN, "owner_not_allowed", f"owner '{owner}' is not enabled")
            record = self._store.get_pr_record(owner, repo, pr_number)
            records = [record] if record is not None else []
        else:
            records = self._store.find_pr_records(number=pr_number, branch=branch)
        records = [r for r in records if r.branch_name == branch] if records else records
        if len(records) > 1:
            where = ", ".join(f"{r.owner}/{r.repo_name}" for r in records)
            return _refused(
                HTTPStatus.CONFLICT,
                "ambiguous_pull_request",
                f"PR #{pr_number} on branch '{branch}' exists in several repositories ({where}): "
                "pass owner and repo",
            )
        if records:
            return self._existing(records[0], pr_number, branch)
        if owner is None or repo is None:
            return _refused(
                HTTPStatus.NOT_FOUND,
                "job_not_found",
                f"no job for PR #{pr_number} on branch '{branch}', and no repository to look in: pass owner "
                "and repo, or set AIPM_DEFAULT_REPOSITORY",
            )
        record = self._store.get_pr_record(owner, repo, pr_number)
        if record is not None and record.branch_name != branch:
            return _refused(
                HTTPStatus.CONFLICT,
                "branch_mismatch",
                f"PR #{pr_number} of {owner}/{repo} is on branch '{record.branch_name}', not '{branch}'",
            )
        return self._create(owner, repo, pr_number, branch, source)

    def _existing(self, record: PullRequestRecord, pr_number: int, branch: str) -> IntakeAnswer:
        try:
            job = self._store.get_job(record.job_id)
        except JobNotFound:
            return _refused(
                HTTPStatus.CONFLICT,
                "job_missing",
                f"PR #{pr_number} has a record but its job {record.job_id} is gone (expired); delegate again",
            )
        if job.status.terminal:
            return _refused(
                HTTPStatus.CONFLICT,
                "job_ended",
                f"job {job.job_id} of PR #{pr_number} ended {job.status.value}"
                f"{f': {job.reason}' if job.reason else ''}; retry it through the API",
                job_id=job.job_id,
            )
        return _accepted(job, pr_number, branch, created=False)

    def _create(self, owner: str, repo: str, pr_number: int, branch: str, source: str) -> IntakeAnswer:
        """A job for an open PR whose branch holds TASK.md (the prototype's PRs and TASK.md commits)."""
        try:
            pull = self._github.get_pull_request(owner, repo, pr_number)
        except GitHubError as err:
            if err.status == 404:
                return _refused(
                    HTTPStatus.NOT_FOUND, "pull_request_not_found", f"{owner}/{repo} has no PR #{pr_number}"
                )
            raise
        if pull.branch != branch:
            return _refused(
                HTTPStatus.CONFLICT,
                "branch_mismatch",
                f"PR #{pr_number} of {owner}/{repo} is on branch '{pull.branch}', not '{branch}'",
            )
        if self._github.file_text(owner, repo, TASK_FILE, branch) is None:
            return _refused(
                HTTPStatus.CONFLICT,
                "no_task",
                f"branch '{branch}' of {owner}/{repo} holds no {TASK_FILE}: there is no task to run",
            )
        title = pull.title
        now = utc_now_iso()
        ttl = int(self._clock_s()) + RECORD_TTL_S
        job = Job(
            job_id=uuid.uuid4().hex,
            status=JobStatus.QUEUED,
            repo=f"{owner}/{repo}",
            owner=owner,
            repo_name=repo,
            branch_name=branch,
            base_branch=pull.base_branch,
            pr_number=pr_number,
            pr_url=pull.html_url,
            task_title=title or f"PR #{pr_number}",
            created_at=now,
            updated_at=now,
            max_attempts=self._config.max_attempts,
            timeline=[
                TimelineEntry(step="queued", at=now, detail=f"from {TASK_FILE} of PR #{pr_number} ({source})")
            ],
            requested_by=f"aipm-agent ({source})",
            requester_id=SERVICE_ID,
            source=source,
            ttl=ttl,
        )
        record = PullRequestRecord(
            owner=owner,
            repo_name=repo,
            number=pr_number,
            html_url=pull.html_url,
            branch_name=branch,
            base_branch=pull.base_branch,
            job_id=job.job_id,
            created_at=now,
            requested_by=job.requested_by,
            requester_id=SERVICE_ID,
            ttl=ttl,
        )
        try:
            self._store.create_delegation(job, record)
        except DelegationExists:
            found = self._store.get_pr_record(owner, repo, pr_number)  # another request created it first
            if found is None:
                raise
            return self._existing(found, pr_number, branch)
        log.info("job created from TASK.md", extra={"job_id": job.job_id, "pr": pr_number, "source": source})
        return _accepted(job, pr_number, branch, created=True)


def _accepted(job: Job, pr_number: int, branch: str, *, created: bool) -> IntakeAnswer:
    body = {
        "status": "accepted",
        "prNumber": pr_number,
        "branch": branch,
        "jobId": job.job_id,
        "jobStatus": job.status.value,
        "created": created,
    }
    return IntakeAnswer(HTTPStatus.ACCEPTED, body, job_id=job.job_id)


def _refused(status: int, error: str, message: str, *, job_id: str | None = None) -> IntakeAnswer:
    body: dict[str, Any] = {"error": error, "message": message}
    if job_id is not None:
        body["jobId"] = job_id
    return IntakeAnswer(status, body)
