"""GitHub webhook deliveries: the signature check and the payload shapes this product acts on.

No I/O here. `verify_signature` runs over the raw body before anything parses it; `parse_event` turns a
verified body into one of the event models below, or raises `PayloadInvalid` naming the field at fault.

Sources (GitHub Docs):
- "Validating webhook deliveries": `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with
  the webhook secret>`, compared in constant time.
- "Webhook events and payloads", delivery headers: `X-GitHub-Event` (event name), `X-GitHub-Delivery` (a GUID
  per delivery; a redelivery carries the GUID of the delivery it repeats), `X-Hub-Signature-256`.
- "Webhook events and payloads", the payloads of `issue_comment` (actions `created`, …; `issue.pull_request`
  is present when the issue is a pull request), `pull_request_review_comment` (`created`; `comment.path`,
  `comment.line`, `comment.author_association`), `pull_request_review` (`submitted`; `review.body`,
  `review.author_association`), `issues` (`labeled`; `label.name`), `ping` (`zen`, `hook_id`). Every payload
  carries `repository` (`name`, `owner.login`, `default_branch`) and `sender`.
- REST "Get a user": `type` is `User`, `Bot` or `Organization`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SIGNATURE_PREFIX = "sha256="
_SIGNATURE = re.compile(r"^sha256=[0-9a-fA-F]{64}$")
# A delivery GUID as GitHub sends it (`72d3162e-cc78-11e3-81ab-4c9367dc0958`); any visible token up to 64
# characters is accepted so a GitHub Enterprise variant is not refused, nothing with spaces or controls.
DELIVERY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EVENT_NAME_PATTERN = re.compile(r"^[a-z_]{1,64}$")
# GitHub's limit on a comment body (characters): "Body is too long (maximum is 65536 characters)".
MAX_COMMENT_CHARS = 65536


class PayloadInvalid(ValueError):
    """A verified delivery whose body is not the documented shape. `field` names what is wrong."""

    def __init__(self, message: str, *, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def signature_of(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` under `secret`."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the HMAC-SHA256 of `body` under `secret` (constant-time comparison).

    A missing, malformed (not `sha256=` + 64 hex digits) or wrong header is False; an empty secret never
    verifies anything.
    """
    if not secret or header is None or not _SIGNATURE.match(header):
        return False
    expected = signature_of(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.lower().encode("ascii"))


class _Payload(BaseModel):
    """Tolerant reader: GitHub adds fields over time; only the ones used here are declared."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Login = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)]


class User(_Payload):
    login: Login
    id: int = 0
    type: str = "User"

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot"


class Repository(_Payload):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    owner: User
    default_branch: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "main"


class Label(_Payload):
    name: Annotated[str, StringConstraints(max_length=100)]


class Issue(_Payload):
    number: Annotated[int, Field(ge=1)]
    title: Annotated[str, StringConstraints(max_length=1024)] = ""
    body: Text | None = None
    user: User
    html_url: str = ""
    state: str = "open"  # open | closed
    pull_request: dict[str, object] | None = None  # present when the issue is a pull request

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Comment(_Payload):
    """An issue comment or a pull-request review comment (`path`/`line`: the line of the diff commented on;
    `line` is null on an outdated comment, then `original_line` names it)."""

    id: int
    body: Text | None = None
    user: User
    author_association: Annotated[str, StringConstraints(max_length=40)] = "NONE"
    html_url: str = ""
    path: Annotated[str, StringConstraints(max_length=4096)] | None = None
    line: int | None = None
    original_line: int | None = None


class Review(_Payload):
    id: int
    body: Text | None = None
    user: User
    author_association: Annotated[str, StringConstraints(max_length=40)] = "NONE"
    html_url: str = ""
    state: str = ""


class PullRequestRef(_Payload):
    number: Annotated[int, Field(ge=1)]
    state: str = "open"  # open | closed (merged ones too)


class IssueCommentEvent(_Payload):
    event: Literal["issue_comment"] = "issue_comment"
    action: str
    issue: Issue
    comment: Comment
    repository: Repository
    sender: User


class ReviewCommentEvent(_Payload):
    event: Literal["pull_request_review_comment"] = "pull_request_review_comment"
    action: str
    comment: Comment
    pull_request: PullRequestRef
    repository: Repository
    sender: User


class ReviewEvent(_Payload):
    event: Literal["pull_request_review"] = "pull_request_review"
    action: str
    review: Review
    pull_request: PullRequestRef
    repository: Repository
    sender: User


class IssuesEvent(_Payload):
    event: Literal["issues"] = "issues"
    action: str
    issue: Issue
    label: Label | None = None
    repository: Repository
    sender: User


class PingEvent(_Payload):
    event: Literal["ping"] = "ping"
    zen: str = ""
    hook_id: int | None = None


WebhookEvent = IssueCommentEvent | ReviewCommentEvent | ReviewEvent | IssuesEvent | PingEvent
_MODELS: dict[str, type[WebhookEvent]] = {
    "issue_comment": IssueCommentEvent,
    "pull_request_review_comment": ReviewCommentEvent,
    "pull_request_review": ReviewEvent,
    "issues": IssuesEvent,
    "ping": PingEvent,
}


def parse_event(name: str, body: bytes) -> WebhookEvent | None:
    """The payload of event `name` as its model; None for an event this product does not act on.

    Raises PayloadInvalid (not JSON, not an object, or a field missing or of the wrong type, named).
    """
    model = _MODELS.get(name)
    if model is None:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadInvalid("the body is not JSON") from None
    if not isinstance(document, dict):
        raise PayloadInvalid("the body is not a JSON object")
    document.pop("event", None)
    try:
        return model.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise PayloadInvalid(f"{where}: {first['msg']}", field=where) from None


_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[`~]*[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)


def mentions(text: str, handle: str) -> bool:
    """Whether `text` mentions `handle` (`@aipm`) as GitHub treats mentions: a whole word,
    case-insensitively, not inside an e-mail address or a longer name (`@aipm-bot`, `me@aipm.dev`), and not
    inside code (fenced blocks, inline code spans) — where this product quotes every text it did not write,
    so its own comments never mention the handle."""
    name = re.escape(handle.lstrip("@"))
    prose = _INLINE_CODE.sub(" ", _FENCED.sub(" ", text))
    return re.search(rf"(?<![A-Za-z0-9_.@/-])@{name}(?![A-Za-z0-9_-])", prose, re.IGNORECASE) is not None
