"""Domain errors and their one mapping to HTTP answers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_src.aws_clients import SecretUnavailable
from lambda_src.github.credentials import GitHubCredentialsInvalid
from lambda_src.github.errors import (
    BranchAlreadyExists,
    BranchConflict,
    BranchNotFound,
    GitHubAuthError,
    GitHubError,
    GitHubRateLimited,
    GitHubRejected,
    GitHubUnavailable,
    IssueNotFound,
    RepositoryNotFound,
)
from lambda_src.records.store import InvalidCursor, InvalidTransition, JobNotFound
from lambda_src.settings import ConfigurationError


class ApiError(Exception):
    """An error the API reports to its caller as-is (`retry_after_s` becomes a Retry-After header)."""

    status = 400
    code = "bad_request"
    retry_after_s: int | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class OwnerNotAllowed(ApiError):
    status = 403
    code = "owner_not_allowed"


class RepositoryApiUrlRefused(ApiError):
    """`repositoryApiUrl` names another GitHub host than the one this deployment talks to."""

    status = 400
    code = "invalid_request"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class InvalidBody(ApiError):
    status = 400
    code = "invalid_request"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class RouteNotFound(ApiError):
    status = 404
    code = "not_found"


class WebhookSignatureInvalid(ApiError):
    """A webhook delivery whose X-Hub-Signature-256 is missing or not the HMAC of its body."""

    status = 401
    code = "invalid_signature"


class WebhookNotConfigured(ApiError):
    """The deployment has no webhook secret (GITHUB_WEBHOOK_SECRET_ID), so no delivery can be verified."""

    status = 503
    code = "webhook_not_configured"


class DelegationFailed(ApiError):
    """A later step failed after GitHub accepted the request; the branch was removed again."""

    status = 503
    code = "delegation_failed"
    retry_after_s = 5


class IdempotencyKeyReused(ApiError):
    """The Idempotency-Key was used before, by the same caller, with a different request body."""

    status = 422
    code = "idempotency_key_reused"


class IdempotencyInProgress(ApiError):
    """The first request with this Idempotency-Key is still running."""

    status = 409
    code = "idempotency_in_progress"
    retry_after_s = 1


class IdempotencyUnavailable(ApiError):
    """The idempotency store could not be read or written; nothing was created."""

    status = 503
    code = "idempotency_unavailable"
    retry_after_s = 5


@dataclass(frozen=True)
class HttpError:
    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def http_error(err: Exception) -> HttpError:
    """The HTTP status and JSON body for a domain error. Unknown errors are not passed in here."""
    if isinstance(err, ApiError):
        return _error(err.status, err.code, err.message, err.field, retry_after_s=err.retry_after_s)
    if isinstance(err, JobNotFound):
        return _error(404, "job_not_found", str(err), "jobId")
    if isinstance(err, InvalidTransition):
        return _error(409, "invalid_transition", str(err))
    if isinstance(err, InvalidCursor):
        return _error(400, "invalid_cursor", str(err), "cursor")
    if isinstance(err, ConfigurationError | GitHubCredentialsInvalid):
        return _error(500, "misconfigured", "the service is misconfigured; operators have been alerted")
    if isinstance(err, SecretUnavailable):
        message = "GitHub credentials could not be read; try again"
        return _error(503, "github_credentials_unavailable", message, retry_after_s=5)
    if isinstance(err, GitHubError):
        return _github_error(err)
    if isinstance(err, ClientError | BotoCoreError):
        message = "the job records could not be read or written; try again"
        return _error(503, "records_unavailable", message, retry_after_s=5)
    raise TypeError(f"no HTTP mapping for {type(err).__name__}")


def internal_error() -> HttpError:
    """The answer to a failure nothing else maps (a bug): no detail leaves the service."""
    return _error(500, "internal_error", "the service failed unexpectedly; operators have been alerted")


# Names the caller knows fields by, where the code's name differs.
_FIELD_NAMES = {"job_id": "jobId", "target_number": "targetNumber", "idempotency-key": "Idempotency-Key"}


def invalid_request(errors: Iterable[Mapping[str, Any]]) -> HttpError:
    """400 for request validation errors (pydantic's), naming every field at fault.

    `field` is the first of them ("" when the body as a whole is at fault, e.g. not JSON); `fields` lists all.
    """
    problems = [_problem(e) for e in errors] or [{"field": "", "problem": "the request is invalid"}]
    message = "; ".join(f"{p['field']}: {p['problem']}" if p["field"] else p["problem"] for p in problems)
    answer = _error(400, "invalid_request", message)
    answer.body.update(field=problems[0]["field"], fields=problems)
    return answer


def _problem(error: Mapping[str, Any]) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query", "header")]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return {"field": "", "problem": "the body is not valid JSON"}
    if kind == "missing":
        problem = "is required"
    elif kind == "extra_forbidden":
        problem = "is not a known field"
    elif kind == "model_attributes_type":
        problem = "must be a JSON object"
    else:
        problem = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    field_name = ".".join(_FIELD_NAMES.get(part, part) for part in loc)
    return {"field": field_name, "problem": problem}


def _github_error(err: GitHubError) -> HttpError:
    if isinstance(err, RepositoryNotFound):
        return _error(404, "repository_not_found", str(err), "repo")
    if isinstance(err, IssueNotFound):
        return _error(404, "target_not_found", str(err), "targetNumber")
    if isinstance(err, BranchNotFound):
        return _error(422, "base_branch_not_found", str(err), "baseBranch")
    if isinstance(err, BranchAlreadyExists):
        return _error(409, "branch_exists", str(err), "branchName")
    if isinstance(err, BranchConflict):
        return _error(422, "branch_conflict", str(err), "branchName")
    if isinstance(err, GitHubRateLimited):
        message = "GitHub is rate limiting this service; try again shortly"
        return _error(503, "github_rate_limited", message, retry_after_s=err.retry_after_s or 60)
    if isinstance(err, GitHubUnavailable):
        message = "GitHub did not answer; nothing was created. Try again shortly"
        return _error(503, "github_unavailable", message, retry_after_s=err.retry_after_s or 5)
    if isinstance(err, GitHubAuthError):
        return _error(502, "github_credentials_rejected", "GitHub rejected this service's credentials")
    if isinstance(err, GitHubRejected):
        return _error(422, "github_rejected", str(err))
    return _error(502, "github_error", str(err))


def _error(
    status: int, code: str, message: str, field_name: str | None = None, *, retry_after_s: float | None = None
) -> HttpError:
    body: dict[str, object] = {"error": code, "message": message}
    if field_name:
        body["field"] = field_name
    headers = {"Retry-After": str(math.ceil(retry_after_s))} if retry_after_s is not None else {}
    return HttpError(status, body, headers)


# The message of a 401 from the gateway, `{"error": "unauthenticated", "message": SIGN_IN_HINT}`: the CDK
# app's UNAUTHORIZED gateway response (cdk/aipm_cdk/api.py, the same text; tests/auth checks they match)
# and the local gateway send it, so whoever gets it knows how to sign in.
SIGN_IN_HINT = (
    "sign in: send Authorization: Bearer <ID token> from Cognito managed login (`aipm login`, the console, "
    "or the sign-in module for your frontend; README: Signing in)"
)
