"""Builders for records used across tests."""

from __future__ import annotations

import uuid

from lambda_src.records.models import Job, JobStatus, PullRequestRecord, utc_now_iso


def make_job(
    *, repo: str = "acme/tools", max_attempts: int = 3, **overrides: object
) -> tuple[Job, PullRequestRecord]:
    job_id = uuid.uuid4().hex
    owner, repo_name = repo.split("/")
    now = utc_now_iso()
    number = int(uuid.uuid4().int % 100000)
    job = Job(
        job_id=job_id,
        status=JobStatus.QUEUED,
        repo=repo,
        owner=owner,
        repo_name=repo_name,
        branch_name=f"feature/x-{job_id[:6]}",
        base_branch="main",
        pr_number=number,
        pr_url=f"https://example.test/{repo}/pull/{number}",
        task_title="Add export",
        created_at=now,
        updated_at=now,
        max_attempts=max_attempts,
    ).model_copy(update=overrides)
    pr = PullRequestRecord(
        owner=owner,
        repo_name=repo_name,
        number=number,
        html_url=job.pr_url,
        branch_name=job.branch_name,
        base_branch="main",
        job_id=job_id,
        created_at=now,
    )
    return job, pr
