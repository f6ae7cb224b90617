"""HTTP-level behaviour: the published OpenAPI document, CORS for the configured origin only, media types."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from openapi_spec_validator import validate

from lambda_src import handler
from tests.api.conftest import USER, VALID_TASK, ApiHarness

CONTRACT_ROUTES = {
    ("post", "/api/personal-delegate"),
    ("post", "/api/delegate/personal"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{job_id}"),
    ("post", "/api/jobs/{job_id}/cancel"),
    ("post", "/api/jobs/{job_id}/retry"),
    ("get", "/api/workers"),
    ("get", "/api/health"),
    ("get", "/api/personal-delegate/status"),
    ("post", "/api/github/webhook"),
}


def test_the_openapi_document_is_published_without_authentication(api: ApiHarness) -> None:
    status, document = api.call("GET", "/api/openapi.json", claims=None)

    assert status == 200
    validate(document)
    assert document["openapi"].startswith("3.")
    routes = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert routes == CONTRACT_ROUTES
    assert document["paths"]["/api/health"]["get"]["security"] == []
    assert document["paths"]["/api/jobs"]["get"]["security"] == [{"cognito": []}]
    delegate = document["paths"]["/api/personal-delegate"]["post"]
    assert [p["name"].lower() for p in delegate["parameters"]] == ["idempotency-key"]
    assert delegate["responses"]["201"]["content"]["application/json"]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/DelegateResponse"},
        {"$ref": "#/components/schemas/TaskPostedResponse"},
    ]
    assert delegate["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    job_view = document["components"]["schemas"]["JobView"]["properties"]
    assert {"jobId", "timeline", "outputTail", "requestedBy", "worker"} <= set(job_view)


def test_every_route_of_the_code_is_in_the_document() -> None:
    document = json.loads(handler.openapi_document(handler.app))
    served = {
        (route.method.lower(), route.openapi_path)
        for route in handler.app._static_routes + handler.app._dynamic_routes
        if route.include_in_schema
    }
    assert served == CONTRACT_ROUTES
    assert {(m, p) for p, ops in document["paths"].items() for m in ops} == served


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_json_is_415(api: ApiHarness, content_type: str) -> None:
    status, answer = api.call(
        "POST", "/api/personal-delegate", VALID_TASK, claims=USER, headers={"Content-Type": content_type}
    )
    assert (status, answer["field"]) == (415, "Content-Type"), answer
    assert api.records() == [] and api.branches() == ["main"]


def test_json_with_a_charset_is_json(api: ApiHarness) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER, headers=headers)[0] == 201


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_00 + b"]" * 100_00, b"\xff\xfe not utf-8", b'{"owner": "acme"', b"null", b'"text"'],
    ids=["deeply-nested", "not-utf8", "truncated", "null", "a-string"],
)
def test_bodies_that_are_not_a_json_object_are_400(api: ApiHarness, raw: bytes) -> None:
    status, answer = api.call("POST", "/api/personal-delegate", raw=raw, claims=USER)
    assert (status, answer["error"]) == (400, "invalid_request"), answer
    assert api.records() == []


CORS_PROBE = textwrap.dedent(
    """
    import json, sys
    from aipm.local.gateway import LambdaContext, proxy_event
    from lambda_src import handler
    out = []
    for method, origin in [("GET", "https://console.example.test"), ("GET", "https://evil.example.test"),
                           ("OPTIONS", "https://console.example.test"), ("OPTIONS", "https://evil.example.test"),
                           ("GET", None)]:
        headers = {"Origin": origin} if origin else {}
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "POST"
        event = proxy_event(method, "/api/health", headers, b"", host="h", source_ip="127.0.0.1")
        result = handler.lambda_handler(event, LambdaContext("aipm-api", "r"))
        got = {**(result.get("headers") or {}), **(result.get("multiValueHeaders") or {})}
        out.append({k: v for k, v in got.items() if k.lower().startswith("access-control-")})
    json.dump(out, sys.stdout)
    """
)


def test_cors_answers_only_the_configured_frontend_origin() -> None:
    env = {"ALLOWED_ORIGIN": "https://console.example.test", "POWERTOOLS_LOG_LEVEL": "ERROR", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", CORS_PROBE], capture_output=True, text=True, env=env, check=True, timeout=60
    )
    allowed_get, evil_get, allowed_preflight, evil_preflight, no_origin = json.loads(result.stdout)

    for allowed in (allowed_get, allowed_preflight):
        assert allowed["Access-Control-Allow-Origin"] in (
            "https://console.example.test",
            ["https://console.example.test"],
        )
    assert "Idempotency-Key" in str(allowed_preflight["Access-Control-Allow-Headers"])
    assert evil_get == {} and no_origin == {}
    assert "Access-Control-Allow-Origin" not in evil_preflight  # without it the browser refuses


CORS_LIST_PROBE = textwrap.dedent(
    """
    import json, sys
    from aipm.local.gateway import LambdaContext, proxy_event
    from lambda_src import handler
    out = []
    for method in ("GET", "OPTIONS"):
        for origin in sys.argv[1:]:
            headers = {"Origin": origin}
            if method == "OPTIONS":
                headers["Access-Control-Request-Method"] = "POST"
            event = proxy_event(method, "/api/health", headers, b"", host="h", source_ip="127.0.0.1")
            result = handler.lambda_handler(event, LambdaContext("aipm-api", "r"))
            got = {**(result.get("headers") or {}), **(result.get("multiValueHeaders") or {})}
            out.append({k: v for k, v in got.items() if k.lower().startswith("access-control-")})
    json.dump(out, sys.stdout)
    """
)


def _cors_probe(env: dict[str, str], origins: list[str]) -> list[dict[str, object]]:
    """The Access-Control headers for GET, then OPTIONS, from each origin, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", CORS_LIST_PROBE, *origins],
        capture_output=True,
        text=True,
        env={"POWERTOOLS_LOG_LEVEL": "ERROR", "PATH": "", **env},
        check=True,
        timeout=60,
    )
    return list(json.loads(result.stdout))


ORIGINS = ["https://aipm.example.test", "http://localhost:4000", "https://evil.example.test"]


@pytest.mark.parametrize(
    "env",
    [
        {"ALLOWED_ORIGINS": "https://aipm.example.test, http://localhost:4000/"},
        # ALLOWED_ORIGINS wins over the older single ALLOWED_ORIGIN, which is still read alone
        {
            "ALLOWED_ORIGINS": "https://aipm.example.test,http://localhost:4000",
            "ALLOWED_ORIGIN": "https://x.test",
        },
    ],
    ids=["list", "list-over-single"],
)
def test_cors_answers_each_listed_origin_and_no_other(env: dict[str, str]) -> None:
    prod_get, dev_get, evil_get, prod_pre, dev_pre, evil_pre = _cors_probe(env, ORIGINS)

    for answer, origin in [
        (prod_get, ORIGINS[0]),
        (dev_get, ORIGINS[1]),
        (prod_pre, ORIGINS[0]),
        (dev_pre, ORIGINS[1]),
    ]:
        assert answer["Access-Control-Allow-Origin"] in (origin, [origin]), answer
    assert evil_get == {} and "Access-Control-Allow-Origin" not in evil_pre


def test_the_single_allowed_origin_setting_still_works() -> None:
    prod_get, dev_get, *_ = _cors_probe({"ALLOWED_ORIGIN": ORIGINS[0]}, ORIGINS)
    assert prod_get["Access-Control-Allow-Origin"] in (ORIGINS[0], [ORIGINS[0]]) and dev_get == {}
