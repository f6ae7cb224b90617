"""No half-made delegations: a failure injected at each step of the request path, through the real handler.

Steps: idempotency record → GitHub query → createRef → createCommitOnBranch → createPullRequest → records
write. After any failure nothing is left (no branch, no open PR, no record) and the caller gets a clear
4xx/5xx; when the mutation landed although its answer was lost, the delegation completes exactly once.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import USER, VALID_TASK, ApiHarness


def assert_nothing_left(api: ApiHarness) -> None:
    assert api.branches() == ["main"]
    assert api.open_pulls() == []
    assert api.records() == []


@pytest.mark.parametrize(
    ("route", "fault", "status", "error"),
    [
        ("graphql", 502, 503, "github_unavailable"),
        ("graphql.repository", 404, 404, "repository_not_found"),
        ("graphql.createRef", 422, 422, "github_rejected"),
        ("graphql.createCommitOnBranch", 422, 422, "github_rejected"),
        ("graphql.createCommitOnBranch", 409, 422, "github_rejected"),
        ("graphql.createPullRequest", 422, 422, "github_rejected"),
        ("graphql.createPullRequest", 403, 502, "github_credentials_rejected"),
    ],
)
def test_a_github_failure_at_any_step_leaves_nothing(
    api: ApiHarness, route: str, fault: int, status: int, error: str
) -> None:
    api.forge.inject_fault(route, fault, times=20)

    got, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert (got, answer["error"]) == (status, error), answer
    assert answer["message"]
    assert_nothing_left(api)


def test_a_mutation_lost_on_the_way_is_not_resent_and_leaves_nothing(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 502, nth=2)

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert (status, answer["error"]) == (503, "github_unavailable"), answer
    assert_nothing_left(api)


def test_a_mutation_that_landed_although_its_answer_was_lost_completes_once(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 502, nth=2, after_effect=True)

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert status == 201, answer
    [pull] = api.open_pulls()
    assert pull["number"] == answer["number"]
    assert api.record_kinds() == ["INTENT", "JOB", "PR"]


def test_records_unavailable_stops_the_delegation_before_github(api: ApiHarness) -> None:
    api.store._ddb.delete_table(TableName=api.table)

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    # The intent is written before the first GitHub call: without the table, GitHub is never asked.
    assert (status, answer["error"]) == (503, "records_unavailable"), answer
    assert api.forge.calls("graphql") == 0
    assert api.branches() == ["main"] and api.open_pulls() == []


def test_a_transient_github_error_is_retried_transparently(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 503)

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert status == 201, answer


def test_github_rate_limiting_beyond_the_budget_is_a_503_with_its_retry_after(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 429, times=20, headers={"Retry-After": "90"})

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert (status, answer["error"]) == (503, "github_rate_limited"), answer
    assert api.last_headers["Retry-After"] == "90"
    assert_nothing_left(api)


def test_github_rejecting_the_credentials_is_a_502(api: ApiHarness) -> None:
    api.forge.inject_fault("graphql", 401, times=20)

    status, answer = api.call("POST", "/api/personal-delegate", VALID_TASK, claims=USER)

    assert (status, answer["error"]) == (502, "github_credentials_rejected"), answer
    assert_nothing_left(api)
