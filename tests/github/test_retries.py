"""Retries: backoff with full jitter on 5xx, 429, secondary rate limits and network errors, in a budget."""

from __future__ import annotations

import socket
import time

import pytest

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient, RetryPolicy
from lambda_src.github.errors import GitHubAuthError, GitHubRateLimited, GitHubUnavailable
from lambda_src.github.graphql_documents import graphql_url_for
from tests.forge.support import OWNER, TOKEN, Repo
from tests.github.conftest import FAST_RETRY
from tests.github.support import open_pr


def test_server_errors_are_retried(
    forge: Forge, client: GitHubClient, repo: Repo, sleeps: list[float]
) -> None:
    forge.inject_fault("get_repo", 500, times=2)
    calls = forge.calls("get_repo")

    assert client.get_default_branch(OWNER, repo.name) == "main"

    assert forge.calls("get_repo") - calls == 3
    assert len(sleeps) == 2


def test_gives_up_after_the_last_attempt(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 503, times=10)
    calls = forge.calls("get_repo")

    with pytest.raises(GitHubUnavailable) as caught:
        client.get_default_branch(OWNER, repo.name)

    assert caught.value.status == 503
    assert forge.calls("get_repo") - calls == FAST_RETRY.max_attempts


def test_retry_after_is_honoured(forge: Forge, client: GitHubClient, repo: Repo, sleeps: list[float]) -> None:
    forge.inject_fault("get_repo", 429, headers={"Retry-After": "3"})
    calls = forge.calls("get_repo")

    assert client.get_default_branch(OWNER, repo.name) == "main"

    assert sleeps == [3.0]
    assert forge.calls("get_repo") - calls == 2


def test_retry_after_on_a_server_error_is_honoured(
    forge: Forge, client: GitHubClient, repo: Repo, sleeps: list[float]
) -> None:
    forge.inject_fault("get_repo", 503, headers={"Retry-After": "2"})

    assert client.get_default_branch(OWNER, repo.name) == "main"

    assert sleeps == [2.0]


def test_a_wait_beyond_the_budget_is_not_started(
    forge: Forge, client: GitHubClient, repo: Repo, sleeps: list[float]
) -> None:
    forge.inject_fault("get_repo", 429, headers={"Retry-After": "60"})
    calls = forge.calls("get_repo")

    with pytest.raises(GitHubRateLimited) as caught:
        client.get_default_branch(OWNER, repo.name)

    assert caught.value.status == 429
    assert caught.value.retry_after_s == 60  # the API passes GitHub's wait on to its caller
    assert sleeps == []
    assert forge.calls("get_repo") - calls == 1


def test_secondary_rate_limit_is_retried(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 403, message="You have exceeded a secondary rate limit. Please wait.")
    calls = forge.calls("get_repo")

    assert client.get_default_branch(OWNER, repo.name) == "main"

    assert forge.calls("get_repo") - calls == 2


def test_exhausted_quota_waits_for_its_reset(
    forge: Forge, client: GitHubClient, repo: Repo, sleeps: list[float]
) -> None:
    reset = int(time.time()) + 2
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    forge.inject_fault("get_repo", 403, headers=headers, message="API rate limit exceeded")

    assert client.get_default_branch(OWNER, repo.name) == "main"

    [waited] = sleeps
    assert 0.0 <= waited <= 2.0


def test_rate_limited_through_every_attempt(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 429, times=10, headers={"Retry-After": "0"})

    with pytest.raises(GitHubRateLimited):
        client.get_default_branch(OWNER, repo.name)


def test_a_plain_403_is_not_retried(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 403, message="Must have admin rights to Repository.")
    calls = forge.calls("get_repo")

    with pytest.raises(GitHubAuthError):
        client.get_default_branch(OWNER, repo.name)

    assert forge.calls("get_repo") - calls == 1


def test_the_graphql_query_is_retried(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("graphql", 502)
    before = client.round_trips

    open_pr(client, repo.name, rest=False)

    assert client.round_trips - before == 3


def test_unreachable_github(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitHubClient(
        f"http://127.0.0.1:{port}/api/v3", lambda: TOKEN, retry=FAST_RETRY, sleep=sleeps.append
    )

    with pytest.raises(GitHubUnavailable) as caught:
        client.get_default_branch(OWNER, "tools")

    assert caught.value.status is None
    assert client.round_trips == FAST_RETRY.max_attempts
    assert TOKEN not in str(caught.value)


def test_backoff_is_full_jitter_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=2.0)
    for attempt in range(1, 7):
        ceiling = min(2.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.backoff_s(attempt) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a fixed delay


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_delay_s=-1)


@pytest.mark.parametrize(
    ("api_url", "graphql_url"),
    [
        ("https://api.github.com", "https://api.github.com/graphql"),
        ("https://api.github.com/", "https://api.github.com/graphql"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/graphql"),
        ("http://127.0.0.1:8123/api/v3/", "http://127.0.0.1:8123/api/graphql"),
    ],
)
def test_graphql_endpoint_is_derived_from_the_rest_base(api_url: str, graphql_url: str) -> None:
    assert graphql_url_for(api_url) == graphql_url
    assert GitHubClient(api_url, lambda: TOKEN).graphql_url == graphql_url
