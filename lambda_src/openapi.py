"""The API's OpenAPI 3 document, generated from the resolver's routes and models (built on first request).

Powertools generates paths and schemas from the route signatures; this module adds what the code says
elsewhere: the error answers (`ErrorBody`, mapped in lambda_src.errors), the Cognito security scheme, and
the public routes. Powertools' own 422 validation answer is dropped: this API answers 400 with an ErrorBody.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from lambda_src import __version__
from lambda_src.models import ErrorBody

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

TITLE = "AIPM code delegation API"
SECURITY_SCHEME = "cognito"
PUBLIC_PATHS = frozenset({"/api/health", "/api/openapi.json", "/api/github/webhook"})
_POWERTOOLS_ONLY = ("HTTPValidationError", "ValidationError", "ResponseValidationError")

_ERRORS: dict[int, str] = {
    400: "Invalid input; `field` names the first field at fault, `fields` all of them",
    401: "No authenticated caller (the webhook: X-Hub-Signature-256 is missing or wrong)",
    403: "The repository owner is not enabled for delegation",
    404: "No such job, repository or route",
    409: "The job cannot make this transition, the branch exists, or the first request with this "
    "Idempotency-Key is still running",
    413: "The body is larger than 64 KiB (the webhook: 1 MiB)",
    415: "The body is not JSON",
    422: "GitHub refused the request (e.g. unknown base branch), or the Idempotency-Key was used with "
    "another body",
    502: "GitHub rejected this service's credentials",
    503: "GitHub, the records table or the idempotency store is unavailable; nothing was created "
    "(Retry-After says when to try again); the webhook: no webhook secret is configured",
}


def responses(ok: int, description: str, *errors: int) -> dict[int, OpenAPIResponse]:
    """A route's OpenAPI responses: success `ok` (its schema from the route's return type), then `errors`,
    each an ErrorBody."""
    answers: dict[int, OpenAPIResponse] = {ok: {"description": description}}
    for status in errors:
        answers[status] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return answers


@cache
def openapi_document(app: APIGatewayRestResolver) -> str:
    """The document as JSON text (generated once per container)."""
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=TITLE,
            version=__version__,
            description="Delegate coding tasks to the AIPM agent and follow them: jobs, workers, health.",
        )
    )
    uses_powertools_schemas = False
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                del responses["422"]
            uses_powertools_schemas |= any(name in json.dumps(responses) for name in _POWERTOOLS_ONLY)
            operation["security"] = [] if path in PUBLIC_PATHS else [{SECURITY_SCHEME: []}]
    components = document.setdefault("components", {})
    if not uses_powertools_schemas:
        for name in _POWERTOOLS_ONLY:
            components.get("schemas", {}).pop(name, None)
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A Cognito user-pool ID token (API Gateway's authorizer); locally "
            "`Bearer <token>` as printed by `make local`.",
        }
    }
    return json.dumps(document, separators=(",", ":"))
