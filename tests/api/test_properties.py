"""Thousands of generated requests through the real handler: never a 5xx; a rejected request writes nothing.

Requests come from schemathesis, generated from the API's own OpenAPI document (valid and invalid ones for
every operation), and from hypothesis strategies that mutate a valid task (wrong types, control characters,
unknown fields, overlong values, non-JSON bytes, deep nesting). Each runs in-process against the real moto
server and the real forge. "Nothing written" means: no GitHub mutation reached the forge (so no branch, commit
or PR), and neither the records table nor the idempotency table holds one item more than before.

PROPERTY_SCALE (default 1) multiplies the number of examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from lambda_src import handler
from lambda_src.openapi import openapi_document
from tests.api.conftest import USER, VALID_TASK, ApiHarness, api_harness

SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))
MUTATIONS = ("graphql.createRef", "graphql.createCommitOnBranch", "graphql.createPullRequest", "create_ref")
MUTATIONS += ("put_contents", "create_pull", "delete_ref", "create_comment")

GITHUB_REFUSED = {"target_not_found", "repository_not_found"}
SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi_document(handler.app)))
OPERATIONS = {f"{op.ok().method.upper()} {op.ok().path}": op.ok() for op in SCHEMA.get_all_operations()}
EXAMPLES = {"POST": 250, "GET": 100}
NO_INPUT = {"GET /api/health", "GET /api/workers"}  # nothing to get wrong: valid requests only
# Signed deliveries, not a schema, decide what the webhook does: tests/api/test_webhook_properties.py.
OWN_PROPERTIES = {"POST /api/github/webhook"}
CASES = [
    pytest.param(name, mode, id=f"{name}-{mode.value}")
    for name in sorted(OPERATIONS)
    for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE)
    if not (name in NO_INPUT and mode is GenerationMode.NEGATIVE) and name not in OWN_PROPERTIES
]


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, ddb: Any, aws_client_factory: Any, aws_endpoint: str
) -> Iterator[ApiHarness]:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        api_harness(
            tmp_path_factory.mktemp("properties"), ddb, aws_client_factory, aws_endpoint, monkeypatch
        ) as h,
    ):
        yield h


class Ledger:
    """What the request path can write: counted after each request and compared with the count before."""

    def __init__(self, api: ApiHarness) -> None:
        self.api = api
        self.requests = 0
        self.last = self.snapshot()

    def snapshot(self) -> tuple[int, ...]:
        ddb = self.api.store._ddb
        tables = (self.api.table, self.api.idempotency_table)
        counts = [ddb.scan(TableName=table, Select="COUNT")["Count"] for table in tables]
        return (*counts, *(self.api.forge.calls(route) for route in MUTATIONS))

    def send(
        self, method: str, path: str, *, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; assert no 5xx, and nothing written unless it was accepted."""
        status, answer = self.api.call(method, path, raw=body, claims=USER, headers=headers)
        self.requests += 1
        assert status < 500, (method, path, body[:200], headers, answer)
        after = self.snapshot()
        if status >= 400 and answer.get("error") in GITHUB_REFUSED:
            # The target was asked for and GitHub refused it (no such repository, issue or PR to comment
            # on): the refused call is counted, nothing was written.
            assert after[:2] == self.last[:2], (method, path, body[:200], status, answer)
        elif status >= 400:
            assert after == self.last, (method, path, body[:200], status, answer)
            assert answer["error"] and answer["message"], answer
        self.last = after
        return status, answer


@pytest.fixture(scope="module")
def ledger(harness: ApiHarness) -> Iterator[Ledger]:
    ledger = Ledger(harness)
    yield ledger
    print(f"\n{ledger.requests} generated requests sent")


def _settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def _encode(body: Any) -> bytes:
    """The request body bytes: none, raw bytes as generated (negative cases), or JSON."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _path_with_query(path: str, query: dict[str, Any] | None) -> str:
    if not query:
        return path
    from urllib.parse import urlencode

    return f"{path}?{urlencode(query, doseq=True)}"


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_schemathesis_requests_never_fail_the_service(
    ledger: Ledger, operation: str, mode: GenerationMode
) -> None:
    api_operation = OPERATIONS[operation]

    @_settings(EXAMPLES[api_operation.method.upper()])
    @given(case=api_operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        body = _encode(case.body)
        headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
        headers.setdefault("Content-Type", "application/json")
        ledger.send(
            case.method, _path_with_query(case.formatted_path, case.query), body=body, headers=headers
        )

    run()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
NASTY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8")
    | st.sampled_from(["\x00", "\x07", "\x1b", "\n", "\r", "\x7f", "\x9b"]),
    max_size=300,
)
# A task for a repository that does not exist: even a mutation that happens to be valid writes nothing.
TARGET = {**VALID_TASK, "repo": "no-such-repo"}


@st.composite
def mutated_tasks(draw: st.DrawFn) -> dict[str, Any]:
    task: dict[str, Any] = dict(TARGET)
    for field in draw(
        st.lists(st.sampled_from([*sorted(TARGET), "baseBranch", "extra"]), min_size=1, max_size=3)
    ):
        task[field] = draw(st.one_of(JSON_VALUES, NASTY_TEXT, st.just(None)))
    for field in draw(st.lists(st.sampled_from(sorted(TARGET)), max_size=2)):
        task.pop(field, None)
    return task


@_settings(600)
@given(task=mutated_tasks(), key=st.none() | NASTY_TEXT)
def test_mutated_tasks_never_fail_the_service(ledger: Ledger, task: dict[str, Any], key: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    status, _ = ledger.send("POST", "/api/personal-delegate", body=json.dumps(task).encode(), headers=headers)
    assert status != 201  # no such repository


RAW_BODIES = st.one_of(
    st.binary(max_size=2000),
    NASTY_TEXT.map(str.encode),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 100_000).map(lambda depth: b'{"a":' * depth),
    st.integers(60_000, 70_000).map(lambda size: json.dumps({**TARGET, "objective": "x" * size}).encode()),
)


@_settings(250)
@given(
    body=RAW_BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]),
)
def test_raw_bodies_never_fail_the_service(ledger: Ledger, body: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, _ = ledger.send("POST", "/api/personal-delegate", body=body, headers=headers)
    assert status != 201


def test_the_valid_task_still_delegates(ledger: Ledger) -> None:
    """The control: the same harness accepts a valid task (so the refusals above are the inputs' doing)."""
    status, answer = ledger.send(
        "POST", "/api/personal-delegate", body=json.dumps(VALID_TASK).encode(), headers={}
    )
    assert status == 201, answer
    assert Path(ledger.api.repo_path).exists()
