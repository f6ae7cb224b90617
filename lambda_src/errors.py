"""Domain errors and their one mapping to HTTP answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from lambda_src.github.errors import (
    BranchAlreadyExists,
    BranchNotFound,
    GitHubAuthError,
    GitHubError,
    GitHubRateLimited,
    GitHubRejected,
    GitHubUnavailable,
    RepositoryNotFound,
)
from lambda_src.records.store import InvalidCursor, InvalidTransition, JobNotFound
from lambda_src.settings import ConfigurationError


class ApiError(Exception):
    """An error the API reports to its caller as-is."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class OwnerNotAllowed(ApiError):
    status = 403
    code = "owner_not_allowed"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class DelegationFailed(ApiError):
    """A later step failed after GitHub accepted the request; the branch was removed again."""

    status = 503
    code = "delegation_failed"


@dataclass(frozen=True)
class HttpError:
    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def http_error(err: Exception) -> HttpError:
    """The HTTP status and JSON body for a domain error. Unknown errors are not passed in here."""
    if isinstance(err, ApiError):
        return _error(err.status, err.code, err.message, err.field)
    if isinstance(err, JobNotFound):
        return _error(404, "job_not_found", str(err), "jobId")
    if isinstance(err, InvalidTransition):
        return _error(409, "invalid_transition", str(err))
    if isinstance(err, InvalidCursor):
        return _error(400, "invalid_cursor", str(err), "cursor")
    if isinstance(err, ConfigurationError):
        return _error(500, "misconfigured", "the service is misconfigured; operators have been alerted")
    if isinstance(err, GitHubError):
        return _github_error(err)
    raise TypeError(f"no HTTP mapping for {type(err).__name__}")


def _github_error(err: GitHubError) -> HttpError:
    if isinstance(err, RepositoryNotFound):
        return _error(404, "repository_not_found", str(err), "repo")
    if isinstance(err, BranchNotFound):
        return _error(422, "base_branch_not_found", str(err), "baseBranch")
    if isinstance(err, BranchAlreadyExists):
        return _error(409, "branch_exists", str(err), "branchName")
    if isinstance(err, GitHubRateLimited):
        answer = _error(503, "github_rate_limited", "GitHub is rate limiting this service; try again shortly")
        answer.headers["Retry-After"] = "60"
        return answer
    if isinstance(err, GitHubUnavailable):
        return _error(
            503, "github_unavailable", "GitHub did not answer; nothing was created. Try again shortly"
        )
    if isinstance(err, GitHubAuthError):
        return _error(502, "github_credentials_rejected", "GitHub rejected this service's credentials")
    if isinstance(err, GitHubRejected):
        return _error(422, "github_rejected", str(err))
    return _error(502, "github_error", str(err))


def _error(status: int, code: str, message: str, field_name: str | None = None) -> HttpError:
    body: dict[str, object] = {"error": code, "message": message}
    if field_name:
        body["field"] = field_name
    return HttpError(status, body)
