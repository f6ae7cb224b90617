"""The API's request and response shapes. Validation lives here, in the types, so bad input never reaches
GitHub, the table or the agent."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from lambda_src.records.models import Job, JobStatus, TimelineEntry

_SINGLE_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

MAX_BRANCH_LENGTH = 200  # leaves room for the unique suffix within git's and GitHub's limits


def _single_line(value: str) -> str:
    if _SINGLE_LINE_CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _multi_line(value: str) -> str:
    if _MULTI_LINE_CONTROL.search(value):
        raise ValueError("must not contain control characters (other than line breaks and tabs)")
    return value


def _owner(value: str) -> str:
    if not _OWNER.match(value):
        raise ValueError(
            "must be a GitHub user or organisation name: 1-39 letters, digits or single hyphens, "
            "not starting or ending with a hyphen"
        )
    return value


def _repo(value: str) -> str:
    if not _REPO.match(value) or value in {".", ".."} or value.lower().endswith(".git"):
        raise ValueError(
            "must be a GitHub repository name: 1-100 letters, digits, '.', '-' or '_', not ending in .git"
        )
    return value


def check_branch_name(value: str) -> str:
    """Apply git's ref-name rules (git check-ref-format); raise ValueError naming each rule broken."""
    problems = []
    if _BRANCH_FORBIDDEN.search(value):
        problems.append("must not contain spaces, control characters or any of ~ ^ : ? * [ \\")
    if value.startswith("-"):
        problems.append("must not start with '-'")
    if ".." in value:
        problems.append("must not contain '..'")
    if "@{" in value or value == "@":
        problems.append("must not contain '@{' or be '@'")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        problems.append("must not start or end with '/' or contain '//'")
    if value.endswith("."):
        problems.append("must not end with '.'")
    if any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")):
        problems.append("no path component may start with '.' or end with '.lock'")
    if problems:
        raise ValueError("; ".join(problems))
    return value


def _criteria(value: object) -> object:
    """The frontend may send acceptance criteria as a list or as one newline-separated string."""
    if isinstance(value, str):
        return [line.strip(" -*\t") for line in value.splitlines() if line.strip(" -*\t")]
    return value


Owner = Annotated[str, StringConstraints(min_length=1, max_length=39), AfterValidator(_owner)]
RepoName = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_repo)]
BranchName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_BRANCH_LENGTH), AfterValidator(check_branch_name)
]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_single_line)
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=8000), AfterValidator(_multi_line)
]
Criterion = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), AfterValidator(_single_line)
]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class DelegateRequest(ApiModel):
    """The "Generate Code & PR" form, exactly as the prototype's frontend sends it."""

    owner: Owner
    repo: RepoName
    branch_name: BranchName
    task_title: Title
    objective: Annotated[LongText, StringConstraints(min_length=1)]
    pr_title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=256),
        AfterValidator(_single_line),
    ]
    constraints: LongText = ""
    acceptance_criteria: Annotated[list[Criterion], BeforeValidator(_criteria), Field(max_length=50)] = Field(
        default_factory=list
    )
    base_branch: BranchName | None = None


class DelegateResponse(ApiModel):
    """The prototype's response, plus the job id and where to follow it."""

    type: Literal["pull_request"] = "pull_request"
    html_url: str = Field(alias="html_url")
    number: int
    branch_name: str
    confirmation_code: str
    job_id: str
    status_url: str


class JobView(ApiModel):
    """A job as the API shows it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    job_id: str
    status: JobStatus
    repo: str
    branch_name: str
    base_branch: str
    pr_number: int
    pr_url: str
    task_title: str
    created_at: str
    updated_at: str
    attempts: int
    max_attempts: int
    worker: str | None
    commit_sha: str | None
    changed_files: list[str] | None
    error: str | None
    reason: str | None
    output_tail: str | None
    requested_by: str | None
    timeline: list[TimelineEntry]

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job_id=job.job_id,
            status=job.status,
            repo=job.repo,
            branch_name=job.branch_name,
            base_branch=job.base_branch,
            pr_number=job.pr_number,
            pr_url=job.pr_url,
            task_title=job.task_title,
            created_at=job.created_at,
            updated_at=job.updated_at,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            worker=job.lease_owner,
            commit_sha=job.commit_sha,
            changed_files=job.changed_files,
            error=job.error,
            reason=job.reason,
            output_tail=job.output_tail,
            requested_by=job.requested_by,
            timeline=job.timeline,
        )
