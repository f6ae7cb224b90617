"""The delegate API: thin routes over the delegation service and the records layer.

Each route parses (types do the validation), calls one function, serialises. Errors are mapped to HTTP in
one place (`lambda_src.errors.http_error`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_src import aws_clients
from lambda_src.delegation import DelegationService
from lambda_src.errors import ApiError, PayloadTooLarge, Unauthenticated, http_error
from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import GitHubError
from lambda_src.models import DelegateRequest, DelegateResponse, JobView
from lambda_src.records.store import JobStore, RecordError
from lambda_src.settings import ApiSettings, ConfigurationError

MAX_BODY_BYTES = 64 * 1024
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aipm-api"))
app = APIGatewayRestResolver(
    enable_validation=True,
    cors=CORSConfig(
        allow_origin=os.environ.get("ALLOWED_ORIGIN") or "https://localhost",
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        max_age=600,
    ),
)


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    store: JobStore
    delegation: DelegationService


@cache
def services() -> Services:
    """Built once per container: settings, the table, the GitHub client (token cached by Powertools)."""
    settings = ApiSettings.from_env()
    store = JobStore(settings.records_table, aws_clients.dynamodb())
    github = GitHubClient(
        settings.github_api_url,
        lambda: aws_clients.secret_token(settings.github_secret_id),
        timeout_s=settings.github_timeout_s,
    )
    return Services(settings=settings, store=store, delegation=DelegationService(settings, store, github))


@app.post("/api/personal-delegate")
@app.post("/api/delegate/personal")
def delegate(request: DelegateRequest) -> Response[dict[str, Any]]:
    """Open a PR holding TASK.md and queue the job that fills it with code."""
    result = services().delegation.delegate(request, requested_by=caller())
    logger.append_keys(job_id=result.job.job_id)
    body = DelegateResponse(
        html_url=result.pull_request.html_url,
        number=result.pull_request.number,
        branch_name=result.pull_request.branch,
        confirmation_code=f"PR{result.timestamp_ms}",
        job_id=result.job.job_id,
        status_url=f"{api_base_url()}/api/jobs/{result.job.job_id}",
    )
    return Response(status_code=201, content_type="application/json", body=body.model_dump(by_alias=True))


@app.get("/api/jobs/<job_id>")
def get_job(job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)]) -> dict[str, Any]:
    """A job's status, timeline, attempts, worker, commit, error and output tail."""
    return JobView.of(services().store.get_job(job_id)).model_dump(by_alias=True)


@app.get("/api/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def caller() -> str:
    """Who is asking: the Cognito user (or the local gateway's stand-in). Raises Unauthenticated."""
    claims = app.current_event.request_context.authorizer.claims or {}
    who = claims.get("email") or claims.get("cognito:username") or claims.get("sub")
    if not who:
        raise Unauthenticated("no authenticated caller on the request")
    return str(who)


def api_base_url() -> str:
    """The public base URL of this API (scheme, host and stage prefix) as the caller reached it."""
    event = app.current_event
    ctx = event.request_context
    stage_prefix = (ctx.path or event.path).removesuffix(event.path)
    scheme = (event.headers or {}).get("X-Forwarded-Proto", "https")
    host = ctx.domain_name or (event.headers or {}).get("Host", "localhost")
    return f"{scheme}://{host}{stage_prefix}"


@app.exception_handler(RequestValidationError)
def invalid_request(err: RequestValidationError) -> Response[dict[str, Any]]:
    problems = [_problem(e) for e in err.errors()]
    message = "; ".join(f"{p['field']}: {p['problem']}" if p["field"] else p["problem"] for p in problems)
    return Response(
        status_code=400,
        content_type="application/json",
        body={
            "error": "invalid_request",
            "message": message,
            "field": problems[0]["field"],
            "fields": problems,
        },
    )


def _problem(error: dict[str, Any]) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query", "header")]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return {"field": "", "problem": "the body is not valid JSON"}
    if kind == "missing":
        problem = "is required"
    elif kind == "extra_forbidden":
        problem = "is not a known field"
    else:
        problem = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return {"field": ".".join(loc), "problem": problem}


@app.exception_handler(ApiError)
@app.exception_handler(GitHubError)
@app.exception_handler(RecordError)
@app.exception_handler(ConfigurationError)
def domain_error(err: Exception) -> Response[dict[str, Any]]:
    answer = http_error(err)
    if answer.status >= 500:
        logger.error("request failed", extra={"error": type(err).__name__, "status": answer.status})
    else:
        logger.info("request refused", extra={"error": type(err).__name__, "status": answer.status})
    return Response(
        status_code=answer.status, content_type="application/json", body=answer.body, headers=answer.headers
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy entry point."""
    body = event.get("body") or ""
    if len(body.encode() if isinstance(body, str) else body) > MAX_BODY_BYTES:
        answer = http_error(PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes", field="body"))
        headers = {"Content-Type": "application/json"}
        return {"statusCode": answer.status, "headers": headers, "body": json.dumps(answer.body)}
    return app.resolve(event, context)
