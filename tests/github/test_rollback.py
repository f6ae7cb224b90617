"""No half-made delegations: failures after the branch exists delete it; requests that may have landed are
looked up, never repeated blindly."""

from __future__ import annotations

import logging

import pytest

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient
from lambda_src.github.errors import GitHubAuthError, GitHubError, GitHubRejected, GitHubUnavailable
from tests.forge.support import OWNER, Repo, git_in_repo
from tests.github.support import open_pr


def assert_nothing_left(forge: Forge, repo: Repo) -> None:
    assert list(forge.branches(OWNER, repo.name)) == ["main"]
    assert [pull for pull in forge.pull_requests(OWNER, repo.name) if pull["state"] == "open"] == []


@pytest.mark.parametrize(
    ("route", "status", "error"),
    [
        ("create_ref", 422, GitHubRejected),
        ("put_contents", 422, GitHubRejected),
        ("put_contents", 500, GitHubUnavailable),
        ("create_pull", 422, GitHubRejected),
        ("create_pull", 503, GitHubUnavailable),
    ],
)
def test_rest_failure_at_any_step_leaves_nothing_behind(
    forge: Forge, client: GitHubClient, repo: Repo, route: str, status: int, error: type[GitHubError]
) -> None:
    forge.inject_fault(route, status, times=10)

    with pytest.raises(error):
        open_pr(client, repo.name, rest=True)

    assert_nothing_left(forge, repo)


@pytest.mark.parametrize(
    ("field", "status", "error"),
    [
        ("graphql.repository", 404, GitHubError),
        ("graphql.createRef", 422, GitHubRejected),
        ("graphql.createCommitOnBranch", 422, GitHubRejected),
        ("graphql.createCommitOnBranch", 409, GitHubRejected),
        ("graphql.createPullRequest", 422, GitHubRejected),
        ("graphql.createPullRequest", 403, GitHubAuthError),
    ],
)
def test_graphql_failure_at_any_step_leaves_nothing_behind(
    forge: Forge, client: GitHubClient, repo: Repo, field: str, status: int, error: type[GitHubError]
) -> None:
    forge.inject_fault(field, status)

    with pytest.raises(error):
        open_pr(client, repo.name, rest=False)

    assert_nothing_left(forge, repo)


def test_graphql_mutation_lost_before_it_ran_is_not_resent(
    forge: Forge, client: GitHubClient, repo: Repo
) -> None:
    forge.inject_fault("graphql", 502, nth=2)
    calls = forge.calls("graphql")

    with pytest.raises(GitHubUnavailable):
        open_pr(client, repo.name, rest=False)

    assert forge.calls("graphql") - calls == 2
    assert_nothing_left(forge, repo)


def test_graphql_mutation_that_landed_although_its_answer_was_lost(
    forge: Forge, client: GitHubClient, repo: Repo
) -> None:
    forge.inject_fault("graphql", 502, nth=2, after_effect=True)
    calls = forge.calls("graphql")

    pr = open_pr(client, repo.name, rest=False)

    assert forge.calls("graphql") - calls == 2
    [pull] = forge.pull_requests(OWNER, repo.name)
    assert (pull["number"], pull["head"]["sha"], pull["state"]) == (pr.number, pr.head_sha, "open")


def test_graphql_mutation_that_half_landed_is_rolled_back(
    forge: Forge, client: GitHubClient, repo: Repo
) -> None:
    forge.inject_fault("graphql", 502, nth=2, after_effect=True)
    forge.inject_fault("graphql.createPullRequest", 422)

    with pytest.raises(GitHubUnavailable):
        open_pr(client, repo.name, rest=False)

    assert_nothing_left(forge, repo)


@pytest.mark.parametrize("route", ["create_ref", "put_contents", "create_pull"])
def test_rest_create_that_landed_although_its_answer_was_lost_is_not_repeated(
    forge: Forge, client: GitHubClient, repo: Repo, route: str
) -> None:
    forge.inject_fault(route, 502, after_effect=True)
    calls = forge.calls(route)

    pr = open_pr(client, repo.name, rest=True)

    assert forge.calls(route) - calls == 1
    assert git_in_repo(repo.path, "rev-list", "--count", f"main..{pr.head_sha}") == "1"
    assert [pull["number"] for pull in forge.pull_requests(OWNER, repo.name)] == [pr.number]


def test_rest_create_that_did_not_land_is_sent_again(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("create_ref", 502)
    calls = forge.calls("create_ref")

    open_pr(client, repo.name, rest=True)

    assert forge.calls("create_ref") - calls == 2


@pytest.mark.parametrize(("after_effect", "sent"), [(True, 1), (False, 2)])
def test_a_comment_is_posted_exactly_once(
    forge: Forge, client: GitHubClient, repo: Repo, after_effect: bool, sent: int
) -> None:
    pr = open_pr(client, repo.name, rest=False)
    forge.inject_fault("create_comment", 500, after_effect=after_effect)
    calls = forge.calls("create_comment")

    client.comment_on_pull_request(OWNER, repo.name, pr.number, "Job failed: timed out")

    assert forge.calls("create_comment") - calls == sent
    assert [c["body"] for c in forge.comments(OWNER, repo.name, pr.number)] == ["Job failed: timed out"]


def test_a_failed_rollback_is_logged_and_the_original_error_raised(
    forge: Forge, client: GitHubClient, repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    forge.inject_fault("create_pull", 422, message="Validation Failed")
    forge.inject_fault("delete_ref", 500, times=10)

    with pytest.raises(GitHubRejected, match="Validation Failed"):
        open_pr(client, repo.name, rest=True)

    assert any(
        "rollback could not delete" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )
