"""The delegate API: thin routes over the delegation service and the records layer.

Each route parses (types do the validation), calls one function, serialises. Errors are mapped to HTTP in
one place (`lambda_src.errors`, through the exception handlers at the end of this module). Every route but
the public ones needs an authenticated caller (API Gateway's Cognito authorizer, or the local gateway's
token check), which `lambda_handler` checks before anything else runs.

Cold start: the cyclic garbage collector is paused while the module and its imports load (they allocate
many long-lived objects and no garbage; collections then cost a fifth of the import time), and what they
built is then frozen out of later collections.
"""

# ruff: noqa: E402 - the collector is paused before the imports below
from __future__ import annotations

import gc

gc.disable()

import base64
import binascii
import json
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambda_src import __version__, aws_clients
from lambda_src.aws_clients import SecretUnavailable
from lambda_src.delegation import DelegationService
from lambda_src.errors import (
    ApiError,
    HttpError,
    InvalidBody,
    PayloadTooLarge,
    RouteNotFound,
    Unauthenticated,
    UnsupportedMediaType,
    http_error,
    internal_error,
    invalid_request,
)
from lambda_src.github.client import GitHubClient
from lambda_src.github.credentials import GitHubCredentials
from lambda_src.github.errors import GitHubError
from lambda_src.idempotency import IdempotencyStore
from lambda_src.identity import Caller
from lambda_src.listing import check_cursor
from lambda_src.models import (
    DELEGATE_FIELDS,
    IDEMPOTENCY_KEY_PATTERN,
    JOB_ID_PATTERN,
    MAX_CURSOR_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    TARGET_PULL_REQUEST,
    DelegateRequest,
    DelegateResponse,
    DelegateStatus,
    Health,
    JobList,
    JobView,
    Owner,
    RepoFullName,
    RepoName,
    TaskPostedResponse,
    WebhookAnswer,
    WorkerPool,
)
from lambda_src.openapi import openapi_document, responses
from lambda_src.records.models import Job, JobStatus
from lambda_src.records.store import JobNotFound, JobStore, RecordError
from lambda_src.settings import ApiSettings, ConfigurationError
from lambda_src.webhook_intake import Accepted, WebhookIntake

MAX_BODY_BYTES = 64 * 1024
WEBHOOK_PATH = "/api/github/webhook"
# GitHub caps payloads at 25 MB; the events acted on here carry at most a 65536-character comment plus the
# pull request and repository objects (tens of KiB).
MAX_WEBHOOK_BODY_BYTES = 1024 * 1024
# Public: no Cognito caller. The webhook's own authentication is its X-Hub-Signature-256 (checked first).
PUBLIC_ROUTES = frozenset({("GET", "/api/health"), ("GET", "/api/openapi.json"), ("POST", WEBHOOK_PATH)})


def allowed_origins(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """ALLOWED_ORIGINS (comma-separated), else the older single ALLOWED_ORIGIN; [] means no CORS headers
    at all, so browsers refuse cross-origin calls. Read when the module loads (the resolver is built then)."""
    listed = environ.get("ALLOWED_ORIGINS") or environ.get("ALLOWED_ORIGIN") or ""
    return list(dict.fromkeys(o.strip().rstrip("/") for o in listed.split(",") if o.strip()))


_ORIGINS = allowed_origins()
CORS = CORSConfig(
    allow_origin=_ORIGINS[0] if _ORIGINS else "",
    extra_origins=_ORIGINS[1:],
    allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
    expose_headers=["Retry-After", "Idempotent-Replayed"],
    max_age=600,
)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aipm-api"))


def _json_object(text: str) -> Any:
    """The body's JSON; absurdly deep nesting is invalid JSON too (not a crash)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


app = APIGatewayRestResolver(enable_validation=True, cors=CORS, json_body_deserializer=_json_object)


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    store: JobStore
    delegation: DelegationService
    idempotency: IdempotencyStore
    webhooks: WebhookIntake


@cache
def services() -> Services:
    """Built once per container: settings, the tables, the GitHub client (credentials cached across calls)."""
    settings = ApiSettings.from_env()
    ddb = aws_clients.dynamodb()
    store = JobStore(settings.records_table, ddb)
    github = GitHubClient(
        settings.github_api_url,
        GitHubCredentials(
            settings.github_api_url,
            lambda: aws_clients.secret_json(settings.github_secret_id),
            timeout_s=settings.github_timeout_s,
        ),
        timeout_s=settings.github_timeout_s,
    )
    delegation = DelegationService(settings, store, github)
    return Services(
        settings=settings,
        store=store,
        delegation=delegation,
        idempotency=IdempotencyStore(settings.idempotency_table, ddb, ttl_s=settings.idempotency_ttl_s),
        webhooks=WebhookIntake(settings, store, delegation, github, lambda: _webhook_secret(settings)),
    )


def _webhook_secret(settings: ApiSettings) -> bytes | None:
    """The webhook secret (`secret` of the JSON secret GITHUB_WEBHOOK_SECRET_ID, cached), None when no
    secret is configured. Raises SecretUnavailable."""
    if not settings.github_webhook_secret_id:
        return None
    value = aws_clients.secret_json(settings.github_webhook_secret_id).get("secret")
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"secret {settings.github_webhook_secret_id} has no 'secret' field")
    return value.encode("utf-8")


JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="32 lowercase hex digits")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Repeat a delegation safely: the same key (per caller) returns the first success.",
    ),
]


DELEGATE_RESPONSES = responses(
    201,
    "The PR is open and the job queued (or, for the other targets, the issue or comment posted)",
    400,
    401,
    403,
    404,
    409,
    413,
    415,
    422,
    502,
    503,
)


@app.post(
    "/api/personal-delegate",
    status_code=201,
    summary="Delegate a task: open a PR holding TASK.md and queue the job",
    responses=DELEGATE_RESPONSES,
    tags=["delegate"],
)
@app.post(
    "/api/delegate/personal",
    status_code=201,
    summary="Delegate a task (alias of /api/personal-delegate)",
    responses=DELEGATE_RESPONSES,
    tags=["delegate"],
)
def delegate(
    request: DelegateRequest, idempotency_key: IdempotencyKey = None
) -> Response[DelegateResponse | TaskPostedResponse]:
    """Open a PR holding TASK.md and queue the job that fills it with code (`target` "pr", the default);
    or, as the prototype did, open an issue (`new-issue`) or comment on `targetNumber` (no job)."""
    who = caller()
    svc = services()
    _log_unknown_fields()

    def produce() -> dict[str, Any]:
        if request.target != TARGET_PULL_REQUEST:
            posted = svc.delegation.post_task(request)
            return TaskPostedResponse.of(posted).model_dump(by_alias=True)
        result = svc.delegation.delegate(request, caller=who, idempotency_key=idempotency_key)
        return DelegateResponse(
            html_url=result.pull_request.html_url,
            number=result.pull_request.number,
            branch_name=result.pull_request.branch,
            confirmation_code=f"PR{result.timestamp_ms}",
            job_id=result.job.job_id,
            status_url=f"{api_base_url()}/api/jobs/{result.job.job_id}",
        ).model_dump(by_alias=True)

    headers: dict[str, str] = {}
    if idempotency_key is None:
        body = produce()
    else:
        svc.idempotency.register_invocation(app.lambda_context)
        request_json = request.model_dump(mode="json", by_alias=True)
        outcome = svc.idempotency.run(
            caller_id=who.id, key=idempotency_key, request=request_json, produce=produce
        )
        body = outcome.body
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
    answer: DelegateResponse | TaskPostedResponse
    if body.get("type") == "pull_request":
        logger.append_keys(job_id=body["jobId"])
        answer = DelegateResponse.model_validate(body)
    else:
        answer = TaskPostedResponse.model_validate(body)
    return Response(status_code=201, content_type="application/json", body=answer, headers=headers)


def _log_unknown_fields() -> None:
    """The tolerant reader's other half: name the body fields this API ignored (never their values)."""
    try:
        raw = app.current_event.json_body
    except ValueError:
        return
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - DELEGATE_FIELDS)
        if unknown:
            logger.info("ignored unknown fields", extra={"fields": unknown[:50]})


@app.get(
    "/api/personal-delegate/status",
    summary="The newest comment on an issue or PR (the prototype's status check)",
    responses=responses(200, "The comment count and the newest comment", 400, 401, 403, 404, 502, 503),
    tags=["delegate"],
)
def delegate_status(
    owner: Annotated[Owner, Query(description="repository owner")],
    repo: Annotated[RepoName, Query(description="repository name")],
    number: Annotated[int, Query(ge=1, description="issue or pull-request number")],
    target_type: Annotated[
        str | None, Query(alias="targetType", max_length=20, description="pr or issue (ignored)")
    ] = None,
) -> DelegateStatus:
    """The prototype's `GET /api/personal-delegate/status` answer: fetchedAt, totalComments, latestComment."""
    caller()
    svc = services()
    svc.delegation.check_owner(owner)
    total, latest = svc.delegation.latest_comment(owner, repo, number)
    return DelegateStatus.of(total, latest)


@app.get(
    "/api/jobs",
    summary="List jobs, newest first (a caller's own; every job for the aipm-admins group)",
    responses=responses(200, "A page of jobs", 400, 401, 503),
    tags=["jobs"],
)
def list_jobs(
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    repo: Annotated[
        RepoFullName | None, Query(description="only jobs of this repository (owner/repo)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 25,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_CURSOR_LENGTH, description="nextCursor of the last page"),
    ] = None,
    mine: Annotated[
        bool, Query(description="only the caller's own jobs (what a non-admin always gets)")
    ] = False,
) -> JobList:
    """A page of jobs filtered by status and/or repository; only the caller's own unless an admin (an admin
    asks for only their own with `mine=true`)."""
    who = caller()
    if cursor is not None:
        check_cursor(cursor, status=status, repo=repo)
    page = services().store.list_jobs(
        status=status,
        repo=repo,
        limit=limit,
        cursor=cursor,
        requester_id=who.id if mine or not who.is_admin else None,
        requester_name=who.name,
    )
    return JobList(jobs=[JobView.of(job) for job in page.jobs], next_cursor=page.next_cursor)


@app.get(
    "/api/jobs/<job_id>",
    summary="Read a job",
    responses=responses(200, "The job", 400, 401, 404, 503),
    tags=["jobs"],
)
def get_job(job_id: JobId) -> JobView:
    """A job's status, timeline, attempts, worker, commit, error and output tail; a follow-up names its
    parent (`followUp.parentJobId`), a PR's first job lists its follow-ups (`followUps`, oldest first).
    Another's job: 404."""
    job = own_job(job_id)
    return JobView.of(job, follow_ups=services().store.follow_ups_of(job))


TRANSITION_RESPONSES = responses(200, "The job after the change", 400, 401, 404, 409, 503)


@app.post("/api/jobs/<job_id>/cancel", summary="Cancel a job", responses=TRANSITION_RESPONSES, tags=["jobs"])
def cancel_job(job_id: JobId) -> JobView:
    """Cancel a job that has not ended; the timeline records who asked. 409 if it has ended."""
    own_job(job_id)
    return JobView.of(services().store.cancel(job_id, by=caller().name))


@app.post("/api/jobs/<job_id>/retry", summary="Retry a job", responses=TRANSITION_RESPONSES, tags=["jobs"])
def retry_job(job_id: JobId) -> JobView:
    """Queue an ended, unsuccessful job again; the timeline records who asked. 409 otherwise."""
    own_job(job_id)
    return JobView.of(services().store.retry(job_id, by=caller().name))


def own_job(job_id: str) -> Job:
    """The job if the caller may see it (theirs, or any for an admin). Raises JobNotFound (404) otherwise:
    another person's job is answered exactly as a job that does not exist."""
    who = caller()
    job = services().store.get_job(job_id)
    if not who.owns(job.requester_id, job.requested_by):
        raise JobNotFound(job_id)
    return job


@app.get(
    "/api/workers",
    summary="Worker-pool status",
    responses=responses(200, "The agents and their slots", 401, 503),
    tags=["workers"],
)
def workers() -> WorkerPool:
    """The agents' last heartbeats: slots, busy or idle, current job, restarts, health."""
    svc = services()
    now_ms = time.time_ns() // 1_000_000
    return WorkerPool.of(svc.store.list_heartbeats(), now_ms=now_ms, stale_s=svc.settings.worker_stale_s)


@app.post(
    WEBHOOK_PATH,
    status_code=202,
    summary="GitHub webhook: PR comments that mention the handle and labelled issues become jobs",
    description="Authenticated by X-Hub-Signature-256 (HMAC-SHA256 of the body under the webhook secret), "
    "not Cognito. 202: a job was queued; 200: ignored, with the reason (a redelivery of a delivery acted on, "
    "an event or comment that asks for nothing, a commenter whose association may not start jobs).",
    responses={
        **responses(202, "A job was queued", 400, 401, 413, 415, 503),
        202: {"description": "A job was queued", "content": {"application/json": {"model": WebhookAnswer}}},
        200: {
            "description": "Ignored, with the reason",
            "content": {"application/json": {"model": WebhookAnswer}},
        },
    },
    tags=["github"],
)
def github_webhook() -> Response[dict[str, Any]]:
    """One GitHub webhook delivery (README: GitHub webhook)."""
    event = app.current_event
    outcome = services().webhooks.receive(dict(event.headers or {}), _raw_body(event.raw_event))
    if isinstance(outcome, Accepted):
        logger.append_keys(job_id=outcome.job_id)
        answer = WebhookAnswer(
            status="accepted", kind=outcome.kind, job_id=outcome.job_id, pr_number=outcome.pr_number
        )
        status = 202
    else:
        logger.info("webhook delivery ignored", extra={"reason": outcome.reason})
        answer, status = WebhookAnswer(status="ignored", reason=outcome.reason), 200
    body = answer.model_dump(by_alias=True, exclude_none=True)
    return Response(status_code=status, content_type="application/json", body=body)


def _raw_body(event: dict[str, Any]) -> bytes:
    """The request body's bytes as they were sent (API Gateway passes text as-is, binary as Base64)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


@app.get("/api/health", summary="Liveness (no authentication)", tags=["service"])
def health() -> Health:
    return Health(version=__version__)


@app.get("/api/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    """This API's OpenAPI 3 document, generated from the routes and models above."""
    return Response(status_code=200, content_type="application/json", body=openapi_document(app))


def caller() -> Caller:
    """Who is asking: the Cognito user (or the local gateway's stand-in). Raises Unauthenticated."""
    who = Caller.from_event(app.current_event.raw_event)
    if who is None:
        raise Unauthenticated("no authenticated caller on the request")
    return who


def api_base_url() -> str:
    """The public base URL of this API (scheme, host and stage prefix) as the caller reached it."""
    event = app.current_event
    ctx = event.request_context
    stage_prefix = (ctx.path or event.path).removesuffix(event.path)
    scheme = (event.headers or {}).get("X-Forwarded-Proto", "https")
    host = ctx.domain_name or (event.headers or {}).get("Host", "localhost")
    return f"{scheme}://{host}{stage_prefix}"


# ---- errors: every answer that is not a success is built here ----------------------------------------------


def _answer(answer: HttpError) -> Response[dict[str, Any]]:
    return Response(
        status_code=answer.status, content_type="application/json", body=answer.body, headers=answer.headers
    )


@app.exception_handler(RequestValidationError)
def _invalid_request(err: RequestValidationError) -> Response[dict[str, Any]]:
    return _answer(invalid_request(err.errors()))


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media_type(err: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
    return _answer(http_error(UnsupportedMediaType("the body must be JSON", field="Content-Type")))


@app.not_found
def _not_found(err: NotFoundError) -> Response[dict[str, Any]]:
    return _answer(http_error(RouteNotFound("no such route")))


@app.exception_handler(
    [ApiError, GitHubError, RecordError, ConfigurationError, SecretUnavailable, ClientError, BotoCoreError]
)
def _domain_error(err: Exception) -> Response[dict[str, Any]]:
    answer = http_error(err)
    if answer.status >= 500:
        logger.error("request failed", extra={"error": type(err).__name__, "status": answer.status})
    else:
        logger.info("request refused", extra={"error": type(err).__name__, "status": answer.status})
    return _answer(answer)


@app.exception_handler(Exception)
def _unexpected(err: Exception) -> Response[dict[str, Any]]:
    logger.exception("unexpected failure")
    return _answer(internal_error())


def _refusal(event: dict[str, Any]) -> ApiError | None:
    """What refuses a request before routing: no caller on a private route, an oversized or non-JSON body."""
    method = str(event.get("httpMethod") or "")
    private = method != "OPTIONS" and (method, event.get("path")) not in PUBLIC_ROUTES
    if private and Caller.from_event(event) is None:
        return Unauthenticated("no authenticated caller on the request")
    body = event.get("body") or ""
    webhook = (method, event.get("path")) == ("POST", WEBHOOK_PATH)
    limit = MAX_WEBHOOK_BODY_BYTES if webhook else MAX_BODY_BYTES
    if len(body.encode() if isinstance(body, str) else body) > limit:
        return PayloadTooLarge(f"the body exceeds {limit} bytes", field="body")
    if webhook:
        return None  # its signature is checked first, over the raw bytes; then its media type and JSON
    if body and event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return InvalidBody("the body is not valid JSON (it is not UTF-8 text)", field="body")
    if body:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        media_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media_type != "application/json":
            return UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)", field="Content-Type"
            )
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy entry point."""
    refused = _refusal(event)
    if refused is not None:
        answer = http_error(refused)
        origin = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}.get("origin")
        headers = {"Content-Type": "application/json", **answer.headers, **CORS.to_dict(origin)}
        return {"statusCode": answer.status, "headers": headers, "body": json.dumps(answer.body)}
    return app.resolve(event, context)


gc.freeze()  # the objects built at import live as long as the container: keep them out of collections
gc.enable()
