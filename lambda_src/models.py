"""The API's request and response shapes. Validation lives here, in the types, so bad input never reaches
GitHub, the table or the agent."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from lambda_src.records.models import Heartbeat, Job, JobStatus, SlotState, TimelineEntry

_SINGLE_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

MAX_BRANCH_LENGTH = 200  # leaves room for the unique suffix within git's and GitHub's limits
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
# Visible ASCII, no spaces (an opaque client-chosen string, e.g. a UUID).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_CURSOR_LENGTH = 2048


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


def _full_name(value: str) -> str:
    owner, slash, repo = value.partition("/")
    if not slash:
        raise ValueError("must be owner/repo")
    _owner(owner)
    _repo(repo)
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


# The validators give the messages; the patterns tell the OpenAPI document's readers the same rules.
_OWNER_PATTERN = r"^[A-Za-z0-9](?:-?[A-Za-z0-9])*$"
_REPO_PATTERN = r"^(?!\.\.?$)(?!.*\.git$)[A-Za-z0-9._-]+$"
Owner = Annotated[
    str,
    StringConstraints(min_length=1, max_length=39),
    AfterValidator(_owner),
    Field(json_schema_extra={"pattern": _OWNER_PATTERN}),
]
RepoName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_repo),
    Field(json_schema_extra={"pattern": _REPO_PATTERN}),
]
BranchName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_BRANCH_LENGTH), AfterValidator(check_branch_name)
]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_single_line)
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=8000), AfterValidator(_multi_line)
]
RepoFullName = Annotated[
    str,
    StringConstraints(min_length=3, max_length=140),
    AfterValidator(_full_name),
    Field(json_schema_extra={"pattern": _OWNER_PATTERN[:-1] + "/" + _REPO_PATTERN[1:]}),
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


class JobList(ApiModel):
    """One page of jobs, newest first; `nextCursor` fetches the next page (null on the last)."""

    jobs: list[JobView]
    next_cursor: str | None


class SlotView(ApiModel):
    id: int
    busy: bool
    ready: bool
    current_job: str | None
    idle_s: float
    restarts: int

    @classmethod
    def of(cls, slot: SlotState) -> SlotView:
        return cls(
            id=slot.id,
            busy=slot.busy,
            ready=slot.ready,
            current_job=slot.current_job,
            idle_s=slot.idle_s,
            restarts=slot.restarts,
        )


class AgentView(ApiModel):
    """One agent host as its last heartbeat describes it; `healthy` = heard from within WORKER_STALE_S."""

    agent_id: str
    last_seen: str
    age_s: float
    healthy: bool
    version: str
    draining: bool
    slots: list[SlotView]


class WorkerPool(ApiModel):
    """The agents' heartbeats; the slot counts cover healthy agents only (a silent agent serves nothing)."""

    agents: list[AgentView]
    total_slots: int
    busy_slots: int
    healthy_agents: int

    @classmethod
    def of(cls, heartbeats: list[Heartbeat], *, now_ms: int, stale_s: float) -> WorkerPool:
        agents = []
        for beat in sorted(heartbeats, key=lambda b: b.agent_id):
            age_s = max(0.0, (now_ms - beat.at_ms) / 1000)
            agents.append(
                AgentView(
                    agent_id=beat.agent_id,
                    last_seen=datetime.fromtimestamp(beat.at_ms / 1000, UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    age_s=round(age_s, 3),
                    healthy=age_s <= stale_s,
                    version=beat.version,
                    draining=beat.draining,
                    slots=[SlotView.of(slot) for slot in beat.slots],
                )
            )
        serving = [slot for agent in agents if agent.healthy for slot in agent.slots]
        return cls(
            agents=agents,
            total_slots=len(serving),
            busy_slots=sum(1 for slot in serving if slot.busy),
            healthy_agents=sum(1 for agent in agents if agent.healthy),
        )


class Health(ApiModel):
    status: Literal["ok"] = "ok"
    version: str


class FieldProblem(ApiModel):
    field: str
    problem: str


class ErrorBody(ApiModel):
    """Every error answer: a stable code, a message for people, and the field at fault when there is one."""

    error: str
    message: str
    field: str | None = None
    fields: list[FieldProblem] | None = None
