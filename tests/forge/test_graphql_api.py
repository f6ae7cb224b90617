"""The forge's GraphQL subset: authentication and GitHub's error shapes."""

from __future__ import annotations

from typing import Any

from aipm.local.forge import Forge
from tests.forge.support import OWNER, Answer, call, new_repository

REPOSITORY = (
    "query($owner: String!, $name: String!) { repository(owner: $owner, name: $name) { id nameWithOwner } }"
)
CREATE_REF = "mutation($input: CreateRefInput!) { createRef(input: $input) { ref { name target { oid } } } }"
COMMIT = (
    "mutation($input: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $input) { commit { oid } } }"
)


def graphql(forge: Forge, query: str, variables: dict[str, Any] | None = None, **options: Any) -> Answer:
    return call(forge, "POST", "/api/graphql", {"query": query, "variables": variables or {}}, **options)


def test_graphql_needs_the_token(forge: Forge) -> None:
    answer = graphql(forge, REPOSITORY, {"owner": OWNER, "name": "x"}, token=None)

    assert (answer.status, answer.body["message"]) == (401, "Requires authentication")


def test_unknown_repository_is_a_typed_error_on_its_field(forge: Forge) -> None:
    answer = graphql(forge, REPOSITORY, {"owner": OWNER, "name": "no-such-repo"})

    assert answer.status == 200
    assert answer.body["data"] == {"repository": None}
    [error] = answer.body["errors"]
    assert (error["type"], error["path"]) == ("NOT_FOUND", ["repository"])
    assert error["message"] == f"Could not resolve to a Repository with the name '{OWNER}/no-such-repo'."


def test_unknown_fields_are_rejected_before_anything_runs(forge: Forge) -> None:
    answer = graphql(forge, '{ repository(owner: "a", name: "b") { nameWithOwner stars } }')

    assert "data" not in answer.body
    assert "stars" in answer.body["errors"][0]["message"]


def test_a_request_without_a_query(forge: Forge) -> None:
    answer = call(forge, "POST", "/api/graphql", {"variables": {}})

    assert answer.body == {
        "errors": [{"message": "A query attribute must be specified and must be a string."}]
    }


def test_create_ref_and_commit_on_branch(forge: Forge) -> None:
    repo = new_repository(forge)
    repo_id = graphql(forge, REPOSITORY, {"owner": OWNER, "name": repo.name}).body["data"]["repository"]["id"]
    tip = forge.branches(OWNER, repo.name)["main"]
    ref_input = {"repositoryId": repo_id, "name": "refs/heads/gql", "oid": tip}

    created = graphql(forge, CREATE_REF, {"input": ref_input})
    duplicate = graphql(forge, CREATE_REF, {"input": ref_input})
    commit_input = {
        "branch": {"repositoryNameWithOwner": f"{OWNER}/{repo.name}", "branchName": "gql"},
        "expectedHeadOid": tip,
        "fileChanges": {"additions": [{"path": "a.txt", "contents": "aGVsbG8K"}]},
        "message": {"headline": "Add a"},
    }
    committed = graphql(forge, COMMIT, {"input": commit_input})
    stale = graphql(forge, COMMIT, {"input": commit_input})

    assert created.body["data"]["createRef"]["ref"] == {"name": "gql", "target": {"oid": tip}}
    assert duplicate.body["errors"][0]["type"] == "UNPROCESSABLE"
    assert "already exists" in duplicate.body["errors"][0]["message"]
    new_tip = committed.body["data"]["createCommitOnBranch"]["commit"]["oid"]
    assert forge.branches(OWNER, repo.name)["gql"] == new_tip
    assert stale.body["data"] == {"createCommitOnBranch": None}
    assert stale.body["errors"][0]["type"] == "STALE_DATA"
    assert forge.branches(OWNER, repo.name)["gql"] == new_tip


def test_invalid_base64_is_rejected(forge: Forge) -> None:
    repo = new_repository(forge)
    commit_input = {
        "branch": {"repositoryNameWithOwner": f"{OWNER}/{repo.name}", "branchName": "main"},
        "expectedHeadOid": forge.branches(OWNER, repo.name)["main"],
        "fileChanges": {"additions": [{"path": "a.txt", "contents": "not base64!"}]},
        "message": {"headline": "Add a"},
    }

    answer = graphql(forge, COMMIT, {"input": commit_input})

    assert answer.body["errors"][0]["type"] == "UNPROCESSABLE"
