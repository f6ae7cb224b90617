"""Typed errors of the GitHub client. Messages name the operation and GitHub's own message, never a token."""

from __future__ import annotations


class GitHubError(Exception):
    """Base of every error the GitHub client raises.

    `status` is the HTTP status GitHub answered with, or None (network failure, GraphQL-level error).
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s  # the wait GitHub asked for (Retry-After / quota reset), if any

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class RepositoryNotFound(GitHubError):
    """The repository does not exist, or the credentials cannot see it (GitHub answers 404 for both)."""


class IssueNotFound(GitHubError):
    """The issue or pull request to comment on does not exist (GitHub answers 404)."""


class BranchNotFound(GitHubError):
    """The base branch does not exist in the repository."""


class BranchAlreadyExists(GitHubError):
    """The branch to create exists already (REST 422 "Reference already exists")."""


class BranchConflict(GitHubError):
    """The branch cannot be created although it does not exist: a branch at a parent path (`release` for
    `release/fix`) or under it, or a name past the 255-byte ref limit (REST 422 "Reference update failed")."""


class GitHubAuthError(GitHubError):
    """GitHub rejected the credentials (401) or their permissions (403 that is not a rate limit)."""


class GitHubRateLimited(GitHubError):
    """GitHub kept rate limiting (429, secondary 403 or an exhausted quota) through every retry."""


class GitHubUnavailable(GitHubError):
    """GitHub answered 5xx or could not be reached, through every retry the policy allows."""


class GitHubRejected(GitHubError):
    """GitHub refused the request for another reason (other 4xx, e.g. 422 validation, GraphQL errors)."""
