"""The GitHub client against the real forge: opening task PRs (GraphQL and REST), comments, branches."""

from __future__ import annotations

import pytest

from aipm.local.forge import Forge
from lambda_src.github import GitHubClient, PullRequest
from lambda_src.github.errors import BranchNotFound
from tests.forge.support import OWNER, Repo, git_in_repo, new_repository
from tests.github.support import BOTH_PATHS, BRANCH, TASK, open_pr


@BOTH_PATHS
def test_opens_a_branch_with_one_task_commit_and_a_pull_request(
    forge: Forge, client: GitHubClient, repo: Repo, rest: bool
) -> None:
    base_tip = forge.branches(OWNER, repo.name)["main"]

    pr = open_pr(client, repo.name, rest=rest)

    tip = forge.branches(OWNER, repo.name)[BRANCH]
    assert pr == PullRequest(
        number=pr.number,
        html_url=f"{forge.base_url}/{OWNER}/{repo.name}/pull/{pr.number}",
        head_sha=tip,
        branch=BRANCH,
        base_branch="main",
    )
    assert git_in_repo(repo.path, "rev-list", "--parents", "-n", "1", tip).split() == [tip, base_tip]
    assert git_in_repo(repo.path, "show", f"{tip}:TASK.md") == TASK.strip()
    assert (
        git_in_repo(repo.path, "log", "-1", "--format=%B", tip) == "feat: Add export button\n\nTask of job 42"
    )
    [pull] = forge.pull_requests(OWNER, repo.name)
    assert (pull["number"], pull["state"], pull["title"]) == (pr.number, "open", "feat: Add export button")
    assert (pull["head"]["ref"], pull["head"]["sha"], pull["base"]["ref"]) == (BRANCH, tip, "main")
    assert pull["body"] == "The task is in TASK.md."


def test_graphql_needs_two_round_trips_where_rest_needs_four(forge: Forge, client: GitHubClient) -> None:
    before = client.round_trips
    open_pr(client, new_repository(forge).name, rest=False)
    graphql_trips = client.round_trips - before

    before = client.round_trips
    open_pr(client, new_repository(forge).name, rest=True)
    rest_trips = client.round_trips - before

    assert (graphql_trips, rest_trips) == (2, 4)


@pytest.mark.parametrize(("rest", "trips"), [(False, 2), (True, 5)], ids=["graphql", "rest"])
def test_without_a_base_branch_the_default_branch_is_the_base(
    forge: Forge, client: GitHubClient, rest: bool, trips: int
) -> None:
    repo = new_repository(forge, default_branch="trunk")
    trunk_tip = forge.branches(OWNER, repo.name)["trunk"]
    before = client.round_trips

    pr = open_pr(client, repo.name, rest=rest, base_branch=None)

    assert client.round_trips - before == trips
    assert pr.base_branch == "trunk"
    assert git_in_repo(repo.path, "rev-parse", f"{pr.head_sha}^") == trunk_tip
    [pull] = forge.pull_requests(OWNER, repo.name)
    assert pull["base"]["ref"] == "trunk"


@BOTH_PATHS
def test_an_unknown_base_branch_is_named_and_nothing_is_created(
    forge: Forge, client: GitHubClient, repo: Repo, rest: bool
) -> None:
    with pytest.raises(BranchNotFound, match="'nope'"):
        open_pr(client, repo.name, rest=rest, base_branch="nope")

    assert list(forge.branches(OWNER, repo.name)) == ["main"]


def test_graphql_commits_every_file_in_one_commit(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    files = {"TASK.md": TASK, "docs/tasks/notes.md": "Notes: é ✓\n"}

    pr = open_pr(client, repo.name, rest=False, files=files)

    assert git_in_repo(repo.path, "rev-list", "--count", f"main..{pr.head_sha}") == "1"
    assert git_in_repo(repo.path, "show", f"{pr.head_sha}:docs/tasks/notes.md") == "Notes: é ✓"


@BOTH_PATHS
def test_replaces_a_task_file_that_the_base_branch_has_already(
    forge: Forge, client: GitHubClient, rest: bool
) -> None:
    repo = new_repository(forge, files={"README.md": "readme\n", "TASK.md": "an older task\n"})

    pr = open_pr(client, repo.name, rest=rest)

    assert git_in_repo(repo.path, "show", f"{pr.head_sha}:TASK.md") == TASK.strip()


def test_reads_the_default_branch(forge: Forge, client: GitHubClient) -> None:
    repo = new_repository(forge, default_branch="trunk")

    assert client.get_default_branch(OWNER, repo.name) == "trunk"


def test_comments_on_a_pull_request(forge: Forge, client: GitHubClient, repo: Repo) -> None:
    pr = open_pr(client, repo.name, rest=False)

    client.comment_on_pull_request(OWNER, repo.name, pr.number, "Job completed: 1 commit pushed")

    assert [c["body"] for c in forge.comments(OWNER, repo.name, pr.number)] == [
        "Job completed: 1 commit pushed"
    ]


def test_reads_a_pull_request(client: GitHubClient, repo: Repo) -> None:
    pr = open_pr(client, repo.name, rest=False)

    assert client.get_pull_request(OWNER, repo.name, pr.number) == pr


def test_deletes_a_branch_and_deleting_it_again_is_fine(
    forge: Forge, client: GitHubClient, repo: Repo
) -> None:
    pr = open_pr(client, repo.name, rest=False)

    client.delete_branch(OWNER, repo.name, pr.branch)
    client.delete_branch(OWNER, repo.name, pr.branch)

    assert list(forge.branches(OWNER, repo.name)) == ["main"]
    assert [pull["state"] for pull in forge.pull_requests(OWNER, repo.name)] == ["closed"]
