"""Job, pull-request and heartbeat records: the shapes stored in the records table.

Shared by the API Lambda and the agent. No AWS imports here; `store.py` is the only module that talks to
DynamoDB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

OUTPUT_TAIL_MAX_CHARS = 8 * 1024
# Hand-backs that use no attempt (a graceful agent stop, a slot-local fault) a job may take; past this a
# hand-back counts, so a fault that follows the job everywhere still ends it instead of looping forever.
MAX_HAND_BACKS = 10


class JobStatus(StrEnum):
    """Where a job is. The happy path runs queued → … → completed; the last six are terminal
    (`checks_failed`: the repository's checks still failed after the last round; nothing was pushed)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    PREPARING = "preparing"
    GENERATING = "generating"
    COMMITTING = "committing"
    PUSHED = "pushed"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    NO_CHANGES = "no_changes"
    CHECKS_FAILED = "checks_failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def active(self) -> bool:
        """True while a worker holds the job under a lease."""
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset(
    {JobStatus.CLAIMED, JobStatus.PREPARING, JobStatus.GENERATING, JobStatus.COMMITTING, JobStatus.PUSHED}
)
TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.CANCELLED,
        JobStatus.NO_CHANGES,
        JobStatus.CHECKS_FAILED,
    }
)
RETRYABLE_STATUSES = frozenset(
    {
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.CANCELLED,
        JobStatus.NO_CHANGES,
        JobStatus.CHECKS_FAILED,
    }
)


def utc_now_iso() -> str:
    """Current UTC time as ISO-8601 with milliseconds and a `Z` (sorts lexically in time order)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Record(BaseModel):
    """Base for stored records: camelCase attribute names, snake_case Python names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_item(self) -> dict[str, Any]:
        """The attributes to store, by their stored (camelCase) names, without `None` values."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TimelineEntry(Record):
    step: str
    at: str
    detail: str = ""


class FollowUp(Record):
    """What a follow-up job answers: a comment on a PR this product opened that mentioned its handle.

    `event` is the GitHub webhook event (`issue_comment`, `pull_request_review_comment`,
    `pull_request_review`); `comment_id` the comment's (or the review's) id; `body` the comment's text with
    control characters shown as escapes (data, never instructions to GitHub); `path`/`line` the file and line
    of a review comment. `parent_job_id` is the PR's first job (its TASK.md states the task).
    """

    parent_job_id: str
    event: str
    delivery_id: str
    comment_id: int
    comment_url: str = ""
    author: str
    body: str
    path: str | None = None
    line: int | None = None


class Job(Record):
    """A job: the unit of work the agent claims. Also the queue entry."""

    job_id: str
    kind: str = "job"
    status: JobStatus
    repo: str
    owner: str
    repo_name: str
    branch_name: str
    base_branch: str
    pr_number: int
    pr_url: str
    task_title: str
    created_at: str
    updated_at: str
    attempts: int = 0
    max_attempts: int = 3
    hand_backs: int = 0
    lease_owner: str | None = None
    lease_expires_at_ms: int | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    error: str | None = None
    reason: str | None = None
    commit_sha: str | None = None
    changed_files: list[str] | None = None
    output_tail: str | None = None
    requested_by: str | None = None
    # Who the job belongs to (Cognito `sub`, or a service identity such as `service:aipm-agent`) and what
    # started it (`api`, `agent:/api/process-pr`, `agent:/generate-code`, `reconciler`).
    requester_id: str | None = None
    source: str | None = None
    story_id: int | str | None = None
    story_title: str | None = None
    repository_api_url: str | None = None
    # A follow-up job (a PR comment asked for more on the same branch); None for a PR's first job.
    follow_up: FollowUp | None = None
    # The issue a labelled-issue delegation answers (its PR body says `Fixes #<n>`).
    fixes_issue: int | None = None
    ttl: int | None = None

    @property
    def worker(self) -> str | None:
        return self.lease_owner


class PullRequestRecord(Record):
    kind: str = "pr"
    owner: str
    repo_name: str
    number: int
    html_url: str
    branch_name: str
    base_branch: str
    job_id: str
    created_at: str
    requested_by: str | None = None
    requester_id: str | None = None
    story_id: int | str | None = None
    story_title: str | None = None
    follow_up_job_ids: list[str] | None = None  # the PR's follow-up jobs, oldest first
    ttl: int | None = None


class SavedSession(Record):
    """A PR's CLI conversation, kept so a follow-up job on any host resumes it (ACP `session/load`, a
    headless CLI's resume flag): the session's id and the CLI's saved-session files (`state`: a gzip tar of
    its profile's `session_state`, written by the CLI: untrusted). One per PR and profile; `job_id` is the
    job that saved it last, `commit_sha` the commit that job pushed (None in records saved before it was
    kept: those resume on any branch)."""

    profile: str
    session_id: str
    state: bytes
    job_id: str
    saved_at: str
    commit_sha: str | None = None  # pushed with it: a follow-up resumes it only on a branch holding it
    ttl: int | None = None

    def to_item(self) -> dict[str, Any]:
        """As Record.to_item, with `state` stored as DynamoDB binary (B), not text."""
        return {**self.model_dump(by_alias=True, exclude_none=True, exclude={"state"}), "state": self.state}


class WebhookDelivery(Record):
    """A GitHub webhook delivery acted on (`X-GitHub-Delivery`), kept until `ttl` so a redelivery of it
    does nothing twice. `job_id`: the job it created."""

    delivery_id: str
    event: str
    received_at: str
    job_id: str | None = None
    ttl: int | None = None


class DelegationIntent(Record):
    """A delegation recorded before its first GitHub write, so a half-made one can be finished or undone.

    `kind` is "intent" while the delegation is pending (the reconciler finds it in the kind index) and
    removed once the job exists. `branches` lists every branch name tried, newest last. `job` is the job to
    create once the PR exists (its PR fields are filled in then); `pr_title`/`pr_body`/`task_md` are what was
    sent, so a resumed request reuses them.
    """

    intent_id: str
    kind: str | None = "intent"
    status: str = "pending"  # pending → done
    created_at: str
    created_at_ms: int
    owner: str
    repo_name: str
    branches: list[str]
    job: dict[str, Any]
    pr_number: int | None = None
    ttl: int | None = None


class SlotState(Record):
    id: int
    busy: bool
    ready: bool
    current_job: str | None = None
    idle_s: float = 0.0
    restarts: int = 0  # crashes + resets
    crashes: int = 0  # the CLI session died or failed
    resets: int = 0  # planned restarts (a live session moved into another job's tree)


class Heartbeat(Record):
    """What an agent reports about itself; the API serves these as the worker-pool status."""

    kind: str = "heartbeat"
    agent_id: str
    created_at: str
    at_ms: int
    version: str
    slots: list[SlotState]
    queued_seen: int = 0
    draining: bool = False
    endpoint: str | None = None  # where the dispatcher nudges this agent (its /api/process-pr server)
    ttl: int | None = None

    @property
    def free_slots(self) -> int:
        """Slots that could start a job now."""
        return 0 if self.draining else sum(1 for s in self.slots if s.ready and not s.busy)
