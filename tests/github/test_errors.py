"""Typed errors of the GitHub client, and the token never showing in them."""

from __future__ import annotations

import pytest

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient
from lambda_src.github.errors import (
    BranchAlreadyExists,
    BranchNotFound,
    GitHubAuthError,
    GitHubError,
    GitHubRejected,
    RepositoryNotFound,
)
from tests.forge.support import OWNER, TOKEN, Repo
from tests.github.conftest import FAST_RETRY
from tests.github.support import BOTH_PATHS, BRANCH, open_pr


def assert_token_free(error: GitHubError) -> None:
    for text in (str(error), repr(error), error.message, *map(str, error.args)):
        assert TOKEN not in text


def test_unknown_repository(client: GitHubClient) -> None:
    with pytest.raises(RepositoryNotFound) as caught:
        client.get_default_branch(OWNER, "no-such-repo")
    assert caught.value.status == 404
    assert_token_free(caught.value)


@BOTH_PATHS
def test_opening_in_an_unknown_repository(client: GitHubClient, rest: bool) -> None:
    with pytest.raises(RepositoryNotFound):
        open_pr(client, "no-such-repo", rest=rest)


@BOTH_PATHS
def test_unknown_base_branch(forge: Forge, client: GitHubClient, repo: Repo, rest: bool) -> None:
    opener = client.open_task_pull_request_rest if rest else client.open_task_pull_request
    with pytest.raises(BranchNotFound) as caught:
        opener(
            owner=OWNER,
            repo=repo.name,
            base_branch="develop",
            branch=BRANCH,
            files={"TASK.md": "x\n"},
            commit_message="m",
            title="t",
            body="b",
        )
    assert "develop" in str(caught.value)
    assert list(forge.branches(OWNER, repo.name)) == ["main"]


@BOTH_PATHS
def test_branch_that_exists_already(forge: Forge, client: GitHubClient, repo: Repo, rest: bool) -> None:
    first = open_pr(client, repo.name, rest=False)

    with pytest.raises(BranchAlreadyExists):
        open_pr(client, repo.name, rest=rest)

    assert forge.branches(OWNER, repo.name)[BRANCH] == first.head_sha
    assert len(forge.pull_requests(OWNER, repo.name)) == 1


@BOTH_PATHS
def test_bad_token(forge: Forge, repo: Repo, rest: bool) -> None:
    wrong = "ghp_WrongToken000000000000000000000000000"
    client = GitHubClient(forge.api_url, lambda: wrong, retry=FAST_RETRY)

    with pytest.raises(GitHubAuthError) as caught:
        open_pr(client, repo.name, rest=rest)

    assert caught.value.status == 401
    assert wrong not in str(caught.value)
    assert_token_free(caught.value)


def test_forbidden_is_an_auth_error_and_not_retried(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 403, message="Resource not accessible by integration")
    calls = forge.calls("get_repo")

    with pytest.raises(GitHubAuthError) as caught:
        client.get_default_branch(OWNER, repo.name)

    assert caught.value.status == 403
    assert forge.calls("get_repo") - calls == 1


def test_other_client_errors_are_rejections(client: GitHubClient, repo: Repo) -> None:
    with pytest.raises(GitHubRejected) as caught:
        client.comment_on_pull_request(OWNER, repo.name, 999, "hello")
    assert caught.value.status == 404


def test_a_token_echoed_by_github_is_scrubbed(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    forge.inject_fault("get_repo", 422, message=f"token {TOKEN} is not allowed here")

    with pytest.raises(GitHubRejected) as caught:
        client.get_default_branch(OWNER, repo.name)

    assert "[redacted]" in str(caught.value)
    assert_token_free(caught.value)


def test_reprs_carry_no_token(client: GitHubClient) -> None:
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(client.__dict__)
