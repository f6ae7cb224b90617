"""Idempotency-Key on the delegate route: Powertools idempotency on the real (moto) DynamoDB table."""

from __future__ import annotations

from typing import Any

import pytest

from aipm.local.gateway import LambdaContext
from lambda_src.errors import IdempotencyInProgress
from lambda_src.idempotency import IdempotencyStore
from tests.api.conftest import OTHER_USER, USER, VALID_TASK, ApiHarness

KEY = {"Idempotency-Key": "9b2f6c1e-5d4a-4c1b-8f3e-2a7d9e0c4b61"}


def delegate(api: ApiHarness, body: dict[str, Any] = VALID_TASK, **kw: Any) -> tuple[int, dict[str, Any]]:
    return api.call("POST", "/api/personal-delegate", body, **{"claims": USER, "headers": KEY, **kw})


def test_a_retried_delegation_returns_the_first_answer_and_creates_nothing(api: ApiHarness) -> None:
    status, first = delegate(api)
    assert status == 201, first
    assert "Idempotent-Replayed" not in api.last_headers
    graphql_calls = api.forge.calls("graphql")

    status, again = delegate(api)

    assert (status, again) == (201, first)
    assert api.last_headers["Idempotent-Replayed"] == "true"
    assert api.forge.calls("graphql") == graphql_calls
    assert api.branches() == sorted(["main", first["branchName"]])
    assert len(api.open_pulls()) == 1
    assert api.record_kinds() == ["INTENT", "JOB", "PR"]


def test_the_alias_route_shares_the_key(api: ApiHarness) -> None:
    first = delegate(api)[1]
    assert api.call("POST", "/api/delegate/personal", VALID_TASK, claims=USER, headers=KEY) == (201, first)


def test_the_same_key_with_another_body_is_refused_naming_the_header(api: ApiHarness) -> None:
    first = delegate(api)[1]

    status, answer = delegate(api, {**VALID_TASK, "taskTitle": "Something else"})

    assert (status, answer["error"], answer["field"]) == (422, "idempotency_key_reused", "Idempotency-Key")
    assert api.branches() == sorted(["main", first["branchName"]])


def test_a_key_is_scoped_to_its_caller(api: ApiHarness) -> None:
    mine = delegate(api)[1]

    status, theirs = delegate(api, claims=OTHER_USER)

    assert status == 201 and theirs["jobId"] != mine["jobId"]
    assert len(api.open_pulls()) == 2


def test_without_a_key_every_request_delegates_anew(api: ApiHarness) -> None:
    first = delegate(api, headers={})[1]
    second = delegate(api, headers={})[1]
    assert first["jobId"] != second["jobId"] and len(api.open_pulls()) == 2
    assert api.idempotency_records() == []


def test_a_failed_github_call_leaves_the_key_free_for_a_retry(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 502, times=20)
    status, answer = delegate(api)
    assert (status, answer["error"]) == (503, "github_unavailable"), answer
    assert api.branches() == ["main"] and api.records() == []
    api.forge.clear_faults()

    status, answer = delegate(api)

    assert status == 201, answer
    assert len(api.open_pulls()) == 1


def test_a_refusal_is_not_remembered_as_the_answer(api: ApiHarness) -> None:
    body = {**VALID_TASK, "repo": "later"}
    assert delegate(api, body)[0] == 404
    api.forge.create_repository("acme", "later", files={"README.md": "x\n"})

    status, answer = delegate(api, body)

    assert status == 201, answer


@pytest.mark.parametrize(
    "key", ["has space", "", "x" * 256, "é-non-ascii"], ids=["space", "empty", "long", "utf8"]
)
def test_a_malformed_key_is_refused_naming_the_header(api: ApiHarness, key: str) -> None:
    status, answer = delegate(api, headers={"Idempotency-Key": key})
    assert (status, answer["field"]) == (400, "Idempotency-Key"), answer
    assert api.branches() == ["main"] and api.records() == []


def test_an_unavailable_idempotency_store_creates_nothing(api: ApiHarness) -> None:
    api.store._ddb.delete_table(TableName=api.idempotency_table)

    status, answer = delegate(api)

    assert (status, answer["error"]) == (503, "idempotency_unavailable"), answer
    assert api.last_headers["Retry-After"] == "5"
    assert api.branches() == ["main"] and api.records() == []


def test_a_second_request_while_the_first_runs_is_told_to_wait(api: ApiHarness) -> None:
    store = IdempotencyStore(api.idempotency_table, api.store._ddb, ttl_s=600)
    store.register_invocation(LambdaContext(function_name="aipm-api", aws_request_id="r"))
    seen: list[Exception] = []

    def first() -> dict[str, Any]:
        try:
            store.run(caller_id="u-1", key="k", request={"a": 1}, produce=lambda: {"jobId": "second"})
        except IdempotencyInProgress as err:
            seen.append(err)
        return {"jobId": "first"}

    outcome = store.run(caller_id="u-1", key="k", request={"a": 1}, produce=first)

    assert outcome.body == {"jobId": "first"} and not outcome.replayed
    assert [type(e) for e in seen] == [IdempotencyInProgress]
    assert store.run(caller_id="u-1", key="k", request={"a": 1}, produce=dict).replayed
