"""What the forge keeps besides git objects: ids, pull requests and comments, saved as one JSON file."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aipm.local.forge.gitrepo import FORGE_LOGIN


def utc_now() -> str:
    """Now as GitHub writes timestamps: ISO 8601, UTC, seconds, 'Z'."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CommentRecord:
    id: int
    body: str
    created_at: str
    updated_at: str
    author: str = FORGE_LOGIN


@dataclass
class ReviewCommentRecord:
    """A comment on a line of a pull request's diff (`in_reply_to_id`: the thread's first comment)."""

    id: int
    body: str
    path: str
    line: int
    commit_id: str
    author: str
    created_at: str
    updated_at: str
    in_reply_to_id: int | None = None


@dataclass
class ReviewRecord:
    id: int
    body: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED
    commit_id: str
    author: str
    submitted_at: str


@dataclass
class PullRecord:
    number: int
    id: int
    title: str
    body: str
    head_ref: str
    base_ref: str
    head_sha: str  # last tip seen; the live tip is read from git while the branch exists
    base_sha: str
    draft: bool
    state: str  # "open" | "closed"
    created_at: str
    updated_at: str
    closed_at: str | None = None
    comments: list[CommentRecord] = field(default_factory=list)
    review_comments: list[ReviewCommentRecord] = field(default_factory=list)
    reviews: list[ReviewRecord] = field(default_factory=list)


@dataclass
class IssueRecord:
    number: int  # shared with pull requests, as on GitHub
    id: int
    title: str
    body: str
    state: str  # "open" | "closed"
    created_at: str
    updated_at: str
    comments: list[CommentRecord] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass
class RepoRecord:
    owner: str
    name: str
    id: int
    created_at: str
    next_number: int = 1
    pulls: list[PullRecord] = field(default_factory=list)
    issues: list[IssueRecord] = field(default_factory=list)
    collaborators: list[str] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def pull(self, number: int) -> PullRecord | None:
        return next((pull for pull in self.pulls if pull.number == number), None)

    def issue(self, number: int) -> IssueRecord | None:
        return next((issue for issue in self.issues if issue.number == number), None)


class ForgeState:
    """Ids, repositories' pull requests and comments. Callers hold `lock` while reading or changing records,
    and call `save()` after a change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._next_id = 1
        self._repos: dict[str, RepoRecord] = {}
        if path.exists():
            self._load(json.loads(path.read_text(encoding="utf-8")))

    def next_id(self) -> int:
        with self.lock:
            value = self._next_id
            self._next_id += 1
            return value

    def repo(self, owner: str, name: str) -> RepoRecord | None:
        with self.lock:
            return self._repos.get(f"{owner}/{name}")

    def add_repo(self, owner: str, name: str) -> RepoRecord:
        with self.lock:
            record = RepoRecord(owner=owner, name=name, id=self.next_id(), created_at=utc_now())
            self._repos[record.full_name] = record
            self.save()
            return record

    def save(self) -> None:
        """Write the state atomically (temp file + rename)."""
        with self.lock:
            document = {"next_id": self._next_id, "repos": [asdict(repo) for repo in self._repos.values()]}
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(document, indent=1), encoding="utf-8")
            temporary.replace(self.path)

    def _load(self, document: dict[str, Any]) -> None:
        self._next_id = int(document.get("next_id", 1))
        for raw in document.get("repos", []):
            pulls = [
                PullRecord(
                    **{
                        **pull,
                        "comments": [CommentRecord(**c) for c in pull.get("comments", [])],
                        "review_comments": [
                            ReviewCommentRecord(**c) for c in pull.get("review_comments", [])
                        ],
                        "reviews": [ReviewRecord(**r) for r in pull.get("reviews", [])],
                    }
                )
                for pull in raw.get("pulls", [])
            ]
            issues = [
                IssueRecord(**{**issue, "comments": [CommentRecord(**c) for c in issue.get("comments", [])]})
                for issue in raw.get("issues", [])
            ]
            record = RepoRecord(**{**raw, "pulls": pulls, "issues": issues})
            self._repos[record.full_name] = record
