"""The PR conversation: GitHub webhook deliveries that become jobs.

A verified delivery (the route checks `X-Hub-Signature-256` before this module sees the body) is one of:
- a comment on a pull request this product opened (an issue comment on the PR, a review comment on a line,
  or a review's body) that mentions the configured handle (`@aipm`), written by someone whose
  `author_association` is allowed (OWNER, MEMBER, COLLABORATOR by default) → a **follow-up job** on the PR's
  branch carrying the comment (and a review comment's file and line); the job belongs to the commenter's
  GitHub login (`requesterId` `github:<login>`, `source` `github:<event>`) and is linked from the PR record
  (`followUpJobIds`) and to the PR's first job (`followUp.parentJobId`);
- an issue labelled with the configured label (`aipm`) in an allowed owner's repository → a new delegation
  from the issue's title and body whose PR body says `Fixes #<n>` (one per issue: labelling it again does
  nothing). Labelling needs triage access on GitHub, so the labeller is the person who vouches for the issue.
Anything else is ignored with a reason. A delivery acted on is recorded under its `X-GitHub-Delivery` id with
a conditional write (for a follow-up in the same transaction as the job), so a redelivery does nothing twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from lambda_src.delegation import DelegationService, intent_id_for
from lambda_src.errors import (
    InvalidBody,
    OwnerNotAllowed,
    UnsupportedMediaType,
    WebhookNotConfigured,
    WebhookSignatureInvalid,
)
from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import BranchNotFound, GitHubError, RepositoryNotFound
from lambda_src.github.webhooks import (
    DELIVERY_ID_PATTERN,
    EVENT_NAME_PATTERN,
    IssueCommentEvent,
    IssuesEvent,
    PayloadInvalid,
    PingEvent,
    Repository,
    ReviewCommentEvent,
    ReviewEvent,
    User,
    mentions,
    parse_event,
    verify_signature,
)
from lambda_src.identity import Caller
from lambda_src.models import MAX_TITLE_CHARS, DelegateRequest
from lambda_src.records.models import FollowUp, Job, JobStatus, TimelineEntry, WebhookDelivery, utc_now_iso
from lambda_src.records.store import (
    DeliveryRecorded,
    JobNotFound,
    JobStore,
    PullRequestRecordMissing,
    RateLimited,
)
from lambda_src.settings import ApiSettings
from lambda_src.taskdoc import as_data, describe_comment

log = logging.getLogger(__name__)

ISSUE_BRANCH = "aipm/issue-{number}"
# Told once per person and PR when their comment asks for a change they may not start (no mention in it).
NOT_ALLOWED_NOTICE = (
    "Thanks for the comment. Only people with write access to this repository (its owner, members and "
    "collaborators) can ask the AIPM agent for changes on this pull request; a maintainer can ask for you."
)


@dataclass(frozen=True)
class Accepted:
    """A job was queued: a follow-up on PR `pr_number`, or a delegation that opened it."""

    kind: Literal["follow_up", "delegation"]
    job_id: str
    pr_number: int


@dataclass(frozen=True)
class Ignored:
    """Nothing was done, and why (sent back to GitHub, shown in the webhook's delivery log). `notify`: the
    commenter may not start jobs and is told so on the PR (once)."""

    reason: str
    notify: bool = False


@dataclass(frozen=True)
class _Comment:
    """The parts of a comment, review comment or review that decide and make a follow-up."""

    event: str
    action: str
    acted_on: str  # the action that counts: "created" (comments) or "submitted" (reviews)
    repository: Repository
    number: int
    comment_id: int
    body: str
    author: User
    association: str
    url: str
    open: bool = True
    path: str | None = None
    line: int | None = None


class WebhookIntake:
    """Turns verified webhook deliveries into follow-up jobs and delegations. One per Lambda container."""

    def __init__(
        self,
        settings: ApiSettings,
        store: JobStore,
        delegation: DelegationService,
        github: GitHubClient,
        secret: Callable[[], bytes | None],
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._settings = settings
        self._store = store
        self._delegation = delegation
        self._github = github
        self._secret = secret
        self._clock_ms = clock_ms

    def receive(self, headers: Mapping[str, str], body: bytes) -> Accepted | Ignored:
        """One delivery as it arrived: the signature is verified over the raw `body` before anything reads
        it, then the delivery headers, then the payload. `headers` are matched case-insensitively.

        Raises WebhookNotConfigured (no secret: 503), WebhookSignatureInvalid (401), UnsupportedMediaType
        (415: not application/json), InvalidBody (400: a missing or malformed X-GitHub-Event /
        X-GitHub-Delivery, or a payload not of the documented shape),
        SecretUnavailable, GitHubError, botocore errors.
        """
        lower = {k.lower(): v for k, v in headers.items()}
        secret = self._secret()
        if not secret:
            raise WebhookNotConfigured("no webhook secret is configured (GITHUB_WEBHOOK_SECRET_ID)")
        if not verify_signature(secret, body, lower.get("x-hub-signature-256")):
            raise WebhookSignatureInvalid(
                "X-Hub-Signature-256 is missing or is not the HMAC-SHA256 of the body under the webhook "
                "secret",
                field="X-Hub-Signature-256",
            )
        media_type = lower.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType(
                "the webhook's content type must be application/json (GitHub: Settings → Webhooks → Content "
                "type)",
                field="Content-Type",
            )
        event_name = lower.get("x-github-event", "")
        if not EVENT_NAME_PATTERN.match(event_name):
            raise InvalidBody("X-GitHub-Event is missing or malformed", field="X-GitHub-Event")
        delivery_id = lower.get("x-github-delivery", "")
        if not DELIVERY_ID_PATTERN.match(delivery_id):
            raise InvalidBody("X-GitHub-Delivery is missing or malformed", field="X-GitHub-Delivery")
        try:
            return self.handle(event_name, delivery_id, body)
        except PayloadInvalid as err:
            raise InvalidBody(f"the {event_name} payload is invalid: {err}", field=err.field) from None

    def handle(self, event_name: str, delivery_id: str, body: bytes) -> Accepted | Ignored:
        """Act on one verified delivery. Raises PayloadInvalid (a handled event whose body is not the
        documented shape), GitHubError (GitHub failed while opening an issue's PR: redeliver later), botocore
        errors."""
        event = parse_event(event_name, body)
        if event is None:
            return Ignored(f"event '{event_name}' is not one this service acts on")
        if isinstance(event, PingEvent):
            return Ignored("ping received: the webhook is set up")
        if isinstance(event, IssuesEvent):
            if self._store.delivery_exists(delivery_id):
                return Ignored(f"delivery {delivery_id} was handled before")
            return self._labelled(delivery_id, event)
        # A follow-up's delivery record is written in the job's transaction, whose condition refuses a
        # redelivery: no read of it first (one round trip less on the way to the queue).
        return self._follow_up(delivery_id, _comment_of(event))

    # ---- follow-ups ----------------------------------------------------------------------------------

    def _follow_up(self, delivery_id: str, comment: _Comment | Ignored) -> Accepted | Ignored:
        if isinstance(comment, Ignored):
            return comment
        refused = self._refusal(comment)
        if refused is not None:
            if refused.notify:
                self._notice(comment)
            return refused
        owner, repo = comment.repository.owner.login, comment.repository.name
        pr = self._store.get_pr_record(owner, repo, comment.number)
        if pr is None:
            return Ignored(f"pull request #{comment.number} of {owner}/{repo} was not opened by this service")
        try:
            parent = self._store.get_job(pr.job_id)
        except JobNotFound:
            return Ignored(f"the job of pull request #{comment.number} no longer exists")
        job = self._job(delivery_id, comment, parent)
        delivery = self._delivery(delivery_id, comment.event, job.job_id)
        now_s = self._clock_ms() // 1000
        try:
            self._store.create_follow_up(
                job,
                delivery,
                per_hour=self._settings.webhook_repo_jobs_per_hour,
                hour=now_s // 3600,
                ttl=now_s + 2 * 3600,
            )
        except DeliveryRecorded:
            return Ignored(f"delivery {delivery_id} was handled before")
        except RateLimited:
            limit = self._settings.webhook_repo_jobs_per_hour
            return Ignored(f"{owner}/{repo} had {limit} follow-up jobs this hour, its limit; ask again later")
        except PullRequestRecordMissing:
            return Ignored(f"pull request #{comment.number} of {owner}/{repo} was not opened by this service")
        log.info(
            "follow-up queued",
            extra={"job_id": job.job_id, "parent_job_id": parent.job_id, "pr": pr.number},
        )
        return Accepted(kind="follow_up", job_id=job.job_id, pr_number=pr.number)

    def _notice(self, comment: _Comment) -> None:
        """Tell someone whose association may not start jobs why nothing happens — once per PR, and only on
        a PR this service opened. A GitHub failure is logged (the delivery is still answered 200)."""
        owner, repo = comment.repository.owner.login, comment.repository.name
        if self._store.get_pr_record(owner, repo, comment.number) is None:
            return
        ttl = self._clock_ms() // 1000 + self._settings.record_ttl_days * 86_400
        if not self._store.record_notice(owner, repo, comment.number, comment.author.login, ttl=ttl):
            return
        try:
            self._github.comment_on_pull_request(owner, repo, comment.number, NOT_ALLOWED_NOTICE)
        except GitHubError as err:
            log.warning("could not tell the commenter why no job starts", extra={"error": str(err)})

    def _refusal(self, comment: _Comment) -> Ignored | None:
        handle = self._settings.webhook_handle
        if comment.action != comment.acted_on:
            return Ignored(f"{comment.event} action '{comment.action}' is not acted on")
        if not mentions(comment.body, handle):
            return Ignored(f"the comment does not mention {handle}")
        if not comment.open:
            return Ignored(f"pull request #{comment.number} is closed")
        if comment.author.is_bot:
            return Ignored("comments by bots start no jobs")
        allowed = self._settings.webhook_associations
        if comment.association.upper() not in allowed:
            return Ignored(
                f"{comment.author.login} is {comment.association} on this repository; only "
                f"{', '.join(sorted(allowed))} start jobs",
                notify=True,
            )
        try:
            self._delegation.check_owner(comment.repository.owner.login)
        except OwnerNotAllowed as err:
            return Ignored(err.message)
        return None

    def _job(self, delivery_id: str, comment: _Comment, parent: Job) -> Job:
        now_ms = self._clock_ms()
        now = utc_now_iso()
        login = comment.author.login
        where = f"{comment.path}:{comment.line}" if comment.path else f"#{comment.number}"
        return Job(
            job_id=uuid.uuid4().hex,
            status=JobStatus.QUEUED,
            repo=parent.repo,
            owner=parent.owner,
            repo_name=parent.repo_name,
            branch_name=parent.branch_name,
            base_branch=parent.base_branch,
            pr_number=parent.pr_number,
            pr_url=parent.pr_url,
            task_title=parent.task_title,
            created_at=now,
            updated_at=now,
            max_attempts=self._settings.job_max_attempts,
            requested_by=login,
            requester_id=f"github:{login}",
            source=f"github:{comment.event}",
            story_id=parent.story_id,
            story_title=parent.story_title,
            follow_up=FollowUp(
                parent_job_id=parent.job_id,
                event=comment.event,
                delivery_id=delivery_id,
                comment_id=comment.comment_id,
                comment_url=comment.url,
                author=login,
                body=as_data(comment.body),
                path=as_data(comment.path) if comment.path else None,
                line=comment.line,
            ),
            timeline=[
                TimelineEntry(
                    step="queued",
                    at=now,
                    detail=f"follow-up of job {parent.job_id}: {describe_comment(comment.event)} by "
                    f"{login} ({where})",
                )
            ],
            ttl=now_ms // 1000 + self._settings.record_ttl_days * 86_400,
        )

    def _delivery(self, delivery_id: str, event: str, job_id: str | None) -> WebhookDelivery:
        return WebhookDelivery(
            delivery_id=delivery_id,
            event=event,
            received_at=utc_now_iso(),
            job_id=job_id,
            ttl=self._clock_ms() // 1000 + self._settings.webhook_delivery_ttl_s,
        )

    # ---- labelled issues -----------------------------------------------------------------------------

    def _labelled(self, delivery_id: str, event: IssuesEvent) -> Accepted | Ignored:
        label = self._settings.webhook_label
        if event.action != "labeled" or event.label is None:
            return Ignored(f"issues action '{event.action}' is not acted on")
        if event.label.name.casefold() != label.casefold():
            return Ignored(f"label '{event.label.name}' is not '{label}'")
        if event.issue.is_pull_request:
            return Ignored("a labelled pull request is not delegated")
        if event.sender.is_bot:
            return Ignored("labels added by bots start no jobs")
        owner, repo, number = event.repository.owner.login, event.repository.name, event.issue.number
        try:
            self._delegation.check_owner(owner)
        except OwnerNotAllowed as err:
            return Ignored(err.message)
        try:
            request = DelegateRequest.model_validate(
                {
                    "owner": owner,
                    "repo": repo,
                    "branchName": ISSUE_BRANCH.format(number=number),
                    "taskTitle": as_data(event.issue.title)[:MAX_TITLE_CHARS],
                    "objective": as_data(event.issue.body or "") or as_data(event.issue.title),
                    "baseBranch": event.repository.default_branch,
                }
            )
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return Ignored(f"issue #{number} cannot be delegated: {where}: {first['msg']}")
        intent_id = intent_id_for(f"github-issue:{owner}/{repo}".lower(), str(number))
        earlier = self._store.get_intent(intent_id)
        if earlier is not None and earlier.status == "done":
            self._record(delivery_id, event.event, None)
            return Ignored(f"issue #{number} was delegated before (pull request #{earlier.pr_number})")
        login = event.sender.login
        try:
            result = self._delegation.delegate(
                request,
                caller=Caller(id=f"github:{login}", name=login),
                intent_id=intent_id,
                source="github:issues",
                fixes_issue=number,
            )
        except (RepositoryNotFound, BranchNotFound) as err:
            return Ignored(f"issue #{number} cannot be delegated: {err}")
        self._record(delivery_id, event.event, result.job.job_id)
        return Accepted(kind="delegation", job_id=result.job.job_id, pr_number=result.pull_request.number)

    def _record(self, delivery_id: str, event: str, job_id: str | None) -> None:
        self._store.record_delivery(self._delivery(delivery_id, event, job_id))


def _comment_of(event: IssueCommentEvent | ReviewCommentEvent | ReviewEvent) -> _Comment | Ignored:
    """The comment of a comment or review event (its documented fields: lambda_src.github.webhooks)."""
    if isinstance(event, IssueCommentEvent):
        if not event.issue.is_pull_request:
            return Ignored("a comment on an issue, not on a pull request")
        c = event.comment
        return _Comment(
            event=event.event,
            action=event.action,
            acted_on="created",
            repository=event.repository,
            number=event.issue.number,
            comment_id=c.id,
            body=c.body or "",
            author=c.user,
            association=c.author_association,
            url=c.html_url,
            open=event.issue.state == "open",
        )
    if isinstance(event, ReviewCommentEvent):
        c = event.comment
        return _Comment(
            event=event.event,
            action=event.action,
            acted_on="created",
            repository=event.repository,
            number=event.pull_request.number,
            comment_id=c.id,
            body=c.body or "",
            author=c.user,
            association=c.author_association,
            url=c.html_url,
            open=event.pull_request.state == "open",
            path=c.path,
            line=c.line if c.line is not None else c.original_line,
        )
    r = event.review
    return _Comment(
        event=event.event,
        action=event.action,
        acted_on="submitted",
        repository=event.repository,
        number=event.pull_request.number,
        comment_id=r.id,
        body=r.body or "",
        author=r.user,
        association=r.author_association,
        url=r.html_url,
        open=event.pull_request.state == "open",
    )
