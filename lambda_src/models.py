"""The API's request and response shapes. Validation lives here, in the types, so bad input never reaches
GitHub, the table or the agent."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from lambda_src.records.models import FollowUp, Heartbeat, Job, JobStatus, SlotState, TimelineEntry
from lambda_src.redaction import screen_secrets

if TYPE_CHECKING:
    from lambda_src.delegation import TaskPosted

_SINGLE_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidirectional-text controls (Unicode TR9: embeddings, overrides, isolates, marks) and the line and
# paragraph separators: they make text read differently from what it is (e.g. U+202E reverses what follows).
_DECEPTIVE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# Invisible characters with no use in a title or a task (soft hyphen, Mongolian vowel separator, zero-width
# space, word joiner and invisible operators, BOM): they make two different texts look the same. Zero-width
# joiner and non-joiner stay allowed in text (emoji sequences, Persian, Indic), not in branch names.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b\u2060-\u2064\ufeff]")
_INVISIBLE_IN_REF = re.compile("[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]")
_INVISIBLE_PROBLEM = "must not contain invisible characters (zero-width space, word joiner, soft hyphen, BOM)"
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SLUG_GAP = re.compile(r"[^a-z0-9]+")

# GitHub refuses a ref whose full name (refs/heads/<branch>) is longer than 255 bytes. The delegation appends
# `-<epoch ms>` (14 bytes until the year 2286) to the branch name, so a requested name may take the rest.
MAX_REF_BYTES = 255
REF_PREFIX = "refs/heads/"
BRANCH_SUFFIX_BYTES = 14
MAX_BRANCH_BYTES = MAX_REF_BYTES - len(REF_PREFIX) - BRANCH_SUFFIX_BYTES
# GitHub's own limit on issue and pull-request titles (characters).
MAX_TITLE_CHARS = 256
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
# Visible ASCII, no spaces (an opaque client-chosen string, e.g. a UUID).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_CURSOR_LENGTH = 2048
TARGET_PULL_REQUEST = "pr"
TARGET_NEW_ISSUE = "new-issue"


def _plain_text(value: str) -> str:
    if _DECEPTIVE.search(value):
        raise ValueError("must not contain bidirectional-text controls or line/paragraph separators")
    if _INVISIBLE.search(value):
        raise ValueError(_INVISIBLE_PROBLEM)
    return value


def _single_line(value: str) -> str:
    if _SINGLE_LINE_CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return _plain_text(value)


def _multi_line(value: str) -> str:
    if _MULTI_LINE_CONTROL.search(value):
        raise ValueError("must not contain control characters (other than line breaks and tabs)")
    return _plain_text(value)


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
    if _DECEPTIVE.search(value):
        problems.append("must not contain bidirectional-text controls or line/paragraph separators")
    if _INVISIBLE_IN_REF.search(value):
        problems.append(_INVISIBLE_PROBLEM.replace("space,", "space or (non-)joiner,"))
    if problems:
        raise ValueError("; ".join(problems))
    return value


def _requested_branch(value: str) -> str:
    """A requested branch name, judged as the branch the delegation creates: `<value>-<epoch ms>`.

    So `feature/`, `v1.`, `x.lock` and `@` pass (the suffix completes them, as in the prototype); the
    full ref must fit GitHub's 255 bytes (UTF-8, as GitHub counts them). Empty: the default applies.
    """
    if not value:
        return value
    if len(value.encode("utf-8")) > MAX_BRANCH_BYTES:
        raise ValueError(
            f"is {len(value.encode('utf-8'))} bytes; with refs/heads/ and the -<timestamp> suffix the ref "
            f"would pass GitHub's {MAX_REF_BYTES}-byte limit (at most {MAX_BRANCH_BYTES} bytes)"
        )
    check_branch_name(f"{value}-{'0' * (BRANCH_SUFFIX_BYTES - 1)}")
    return value


def slug_branch(title: str) -> str:
    """The prototype's default branch: `feature/` + the lower-cased title, each run of other characters
    than a-z and 0-9 turned into one '-' (apps/backend/app.js performDelegation), cut to fit the ref limit."""
    slug = _SLUG_GAP.sub("-", title.lower())
    return f"feature/{slug}"[:MAX_BRANCH_BYTES]


def _text(value: object) -> object:
    """The prototype's `String(value || '').trim()`: null and absent become '', strings are trimmed."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else value


def _criterion_text(value: object) -> str:
    """One criterion as the prototype's `String(item || '').trim()`: falsy items become '', numbers text."""
    if value is None or value is False or value == 0 or value == "":
        return ""
    if value is True:
        return "true"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value).strip()
    raise ValueError("each acceptance criterion must be text or a number")


def _criteria(value: object) -> object:
    """The prototype's normalizeAcceptanceCriteria: a string is split into lines, a list is turned to
    text; each line is trimmed and empty ones dropped, otherwise kept as given (a leading '-' or '*' is
    part of the criterion); anything else (null included) is an empty list."""
    if isinstance(value, str):
        lines: list[object] = list(value.split("\n"))
    elif isinstance(value, list):
        lines = list(value)
    elif value is None:
        return []
    else:
        return value  # not a list: the type check names the field
    texts = [_criterion_text(line) for line in lines]
    return [text for text in texts if text]


def _story_id(value: object) -> object:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number, a string or null")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _target_number(value: object) -> object:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
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
    str, StringConstraints(min_length=1, max_length=MAX_REF_BYTES), AfterValidator(check_branch_name)
]
RequestedBranch = Annotated[
    str,
    BeforeValidator(_text),
    StringConstraints(max_length=MAX_REF_BYTES),
    AfterValidator(_requested_branch),
]
Title = Annotated[
    str,
    BeforeValidator(_text),
    StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS),
    AfterValidator(_single_line),
]
OptionalTitle = Annotated[
    str, BeforeValidator(_text), StringConstraints(max_length=MAX_TITLE_CHARS), AfterValidator(_single_line)
]
LongText = Annotated[
    str, BeforeValidator(_text), StringConstraints(max_length=8000), AfterValidator(_multi_line)
]
RepoFullName = Annotated[
    str,
    StringConstraints(min_length=3, max_length=140),
    AfterValidator(_full_name),
    Field(json_schema_extra={"pattern": _OWNER_PATTERN[:-1] + "/" + _REPO_PATTERN[1:]}),
]
Criterion = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_single_line)]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class DelegateRequest(ApiModel):
    """The "Generate Code & PR" form, exactly as the prototype's frontend sends it.

    A tolerant reader (demian7575/aipm apps/frontend/public/app.js sends `storyId`, `storyTitle`,
    `repositoryApiUrl`, `target` besides the form; older callers send more): fields it does not know are
    ignored (the route logs their names). The prototype backend's normalisation applies
    (apps/backend/app.js normalizeDelegatePayload): strings trimmed, null as empty, an empty `branchName`
    becomes `feature/<slug of taskTitle>`, an empty `prTitle` the task title, criteria as lines.
    `target` is `pr` (the default here; the prototype's backend defaulted to `new-issue`, its frontend always
    sends `pr`), `new-issue`, or anything else meaning a comment on issue/PR `targetNumber`.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    owner: Annotated[Owner, BeforeValidator(_text)]
    repo: Annotated[RepoName, BeforeValidator(_text)]
    branch_name: RequestedBranch = ""
    task_title: Title
    objective: Annotated[LongText, StringConstraints(min_length=1)]
    pr_title: OptionalTitle = ""
    constraints: LongText = ""
    acceptance_criteria: Annotated[list[Criterion], BeforeValidator(_criteria), Field(max_length=50)] = Field(
        default_factory=list
    )
    base_branch: Annotated[BranchName | None, BeforeValidator(lambda v: _text(v) or None)] = None
    story_id: Annotated[
        int | Annotated[str, StringConstraints(max_length=64), AfterValidator(_single_line)] | None,
        BeforeValidator(_story_id),
    ] = None
    story_title: Annotated[
        str, BeforeValidator(_text), StringConstraints(max_length=1000), AfterValidator(_single_line)
    ] = ""
    repository_api_url: Annotated[
        str, BeforeValidator(_text), StringConstraints(max_length=2048), AfterValidator(_single_line)
    ] = ""
    target: Annotated[
        str, BeforeValidator(lambda v: _text(v) or TARGET_PULL_REQUEST), StringConstraints(max_length=40)
    ] = TARGET_PULL_REQUEST
    target_number: Annotated[
        Annotated[int, Field(ge=1)] | None, BeforeValidator(_target_number), Field(validate_default=True)
    ] = None

    @field_validator("target_number", mode="after")
    @classmethod
    def _number_for_comments(cls, value: int | None, info: ValidationInfo) -> int | None:
        target = info.data.get("target", TARGET_PULL_REQUEST)
        if value is None and target not in (TARGET_PULL_REQUEST, TARGET_NEW_ISSUE):
            raise ValueError(f"is required when target is '{target}' (the issue or PR to comment on)")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> DelegateRequest:
        if not self.branch_name:
            object.__setattr__(self, "branch_name", slug_branch(self.task_title))
        if not self.pr_title:
            object.__setattr__(self, "pr_title", self.task_title)
        return self

    @property
    def comments_on_existing(self) -> bool:
        return self.target not in (TARGET_PULL_REQUEST, TARGET_NEW_ISSUE)


DELEGATE_FIELDS = frozenset((field.alias or name) for name, field in DelegateRequest.model_fields.items())


class DelegateResponse(ApiModel):
    """The prototype's response, plus the job id and where to follow it."""

    type: Literal["pull_request"] = "pull_request"
    html_url: str = Field(alias="html_url")
    number: int
    branch_name: str
    confirmation_code: str
    job_id: str
    status_url: str


class TaskPostedResponse(ApiModel):
    """The prototype's answer for `target` new-issue (`type` "issue") or a comment on `targetNumber`."""

    type: Literal["issue", "comment"]
    id: int
    html_url: str = Field(alias="html_url")
    number: int
    task_html_url: str
    thread_html_url: str
    confirmation_code: str

    @classmethod
    def of(cls, posted: TaskPosted) -> TaskPostedResponse:
        task_url = posted.html_url.split("#", 1)[0] if posted.type == "comment" else posted.html_url
        return cls(
            type="comment" if posted.type == "comment" else "issue",
            id=posted.id,
            html_url=posted.html_url,
            number=posted.number,
            task_html_url=task_url,
            thread_html_url=posted.html_url,
            confirmation_code=posted.confirmation_code,
        )


class CommentView(ApiModel):
    """A GitHub issue comment as the prototype's status answer passes it on (GitHub's own field names)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int | None = None
    author: str = ""
    body: str = ""
    created_at: str | None = Field(default=None, alias="created_at")
    html_url: str | None = Field(default=None, alias="html_url")


class DelegateStatus(ApiModel):
    """The prototype's `GET /api/personal-delegate/status` answer."""

    fetched_at: str
    total_comments: int
    latest_comment: CommentView | None

    @classmethod
    def of(cls, total: int, latest: dict[str, object] | None) -> DelegateStatus:
        comment = None
        if latest is not None:
            user = latest.get("user")
            author = user.get("login") if isinstance(user, dict) else ""
            comment = CommentView(
                id=latest.get("id") if isinstance(latest.get("id"), int) else None,
                author=str(author or ""),
                body=str(latest.get("body") or ""),
                created_at=str(latest.get("created_at") or "") or None,
                html_url=str(latest.get("html_url") or "") or None,
            )
        return cls(
            fetched_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            total_comments=total,
            latest_comment=comment,
        )


class FollowUpView(ApiModel):
    """A follow-up job as its PR's first job lists it: enough to tell them apart and open one."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    job_id: str
    status: JobStatus
    created_at: str
    updated_at: str
    author: str
    event: str
    comment_url: str
    path: str | None
    line: int | None
    commit_sha: str | None

    @classmethod
    def of(cls, job: Job) -> FollowUpView:
        follow_up = job.follow_up
        assert follow_up is not None
        return cls(
            job_id=job.job_id,
            status=job.status,
            created_at=job.created_at,
            updated_at=job.updated_at,
            author=follow_up.author,
            event=follow_up.event,
            comment_url=follow_up.comment_url,
            path=follow_up.path,
            line=follow_up.line,
            commit_sha=job.commit_sha,
        )


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
    story_id: int | str | None
    story_title: str | None
    source: str | None
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
    # A follow-up job: the PR comment it answers (`parentJobId`: the PR's first job). None otherwise.
    follow_up: FollowUp | None = None
    # A labelled-issue delegation: the issue its PR fixes.
    fixes_issue: int | None = None
    # A PR's first job, read alone (GET /api/jobs/{id}): the PR's follow-up jobs, oldest first. None in
    # lists and on the transitions (not read there).
    follow_ups: list[FollowUpView] | None = None

    @classmethod
    def of(cls, job: Job, follow_ups: list[Job] | None = None) -> JobView:
        return cls(
            follow_ups=[FollowUpView.of(f) for f in follow_ups if f.follow_up]
            if follow_ups is not None
            else None,
            job_id=job.job_id,
            status=job.status,
            repo=job.repo,
            branch_name=job.branch_name,
            base_branch=job.base_branch,
            pr_number=job.pr_number,
            pr_url=job.pr_url,
            task_title=job.task_title,
            story_id=job.story_id,
            story_title=job.story_title,
            source=job.source,
            created_at=job.created_at,
            updated_at=job.updated_at,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            worker=job.lease_owner,
            commit_sha=job.commit_sha,
            changed_files=job.changed_files,
            error=job.error,
            reason=job.reason,
            output_tail=screen_secrets(job.output_tail) if job.output_tail is not None else None,
            requested_by=job.requested_by,
            timeline=job.timeline,
            follow_up=job.follow_up,
            fixes_issue=job.fixes_issue,
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
    crashes: int
    resets: int

    @classmethod
    def of(cls, slot: SlotState) -> SlotView:
        return cls(
            id=slot.id,
            busy=slot.busy,
            ready=slot.ready,
            current_job=slot.current_job,
            idle_s=slot.idle_s,
            restarts=slot.restarts,
            crashes=slot.crashes,
            resets=slot.resets,
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


class WebhookAnswer(ApiModel):
    """The answer to a GitHub webhook delivery: `accepted` (202: a job was queued — a follow-up on PR
    `prNumber`, or the delegation that opened it) or `ignored` (200, with the reason)."""

    status: Literal["accepted", "ignored"]
    reason: str | None = None
    kind: Literal["follow_up", "delegation"] | None = None
    job_id: str | None = None
    pr_number: int | None = None


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
