"""The GraphQL documents the client sends, their variables, and where GitHub's GraphQL endpoint is.

Field and input names follow GitHub's published schema (checked against a vendored excerpt in tests/github).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Round trip 1: the repository's node id, the base branch (named, or the default branch) and its tip,
# whether the new branch exists already, and whether a branch exists at one of its parent paths (`release`
# for `release/fix-1`: git stores refs as paths, so GitHub cannot create the new one and answers 422
# "Reference update failed"). Both documents answer in the same shape (`baseRef` is an alias).
_TARGET_QUERY = """
query {operation}($owner: String!, $name: String!{base_variable}, $headRef: String!{prefix_variables}) {{
  repository(owner: $owner, name: $name) {{
    id
    baseRef: {base_field} {{
      name
      target {{
        oid
      }}
    }}
    headRef: ref(qualifiedName: $headRef) {{
      id
    }}{prefix_fields}
  }}
}}
"""
_PREFIX_FIELD = """
    {alias}: ref(qualifiedName: ${alias}) {{
      name
    }}"""
_NAMED_BASE = {
    "operation": "OpenTaskPullRequestTarget",
    "base_variable": ", $baseRef: String!",
    "base_field": "ref(qualifiedName: $baseRef)",
}
_DEFAULT_BASE = {
    "operation": "OpenTaskPullRequestTargetOnDefaultBranch",
    "base_variable": "",
    "base_field": "defaultBranchRef",
}
TARGET_QUERY = _TARGET_QUERY.format(**_NAMED_BASE, prefix_variables="", prefix_fields="")
DEFAULT_BASE_TARGET_QUERY = _TARGET_QUERY.format(**_DEFAULT_BASE, prefix_variables="", prefix_fields="")
PREFIX_ALIAS = "parentPath{}"

# Round trip 2: one document; GitHub runs the mutation fields one after the other, in this order.
OPEN_PULL_REQUEST_MUTATION = """
mutation OpenTaskPullRequest(
  $createRef: CreateRefInput!
  $createCommit: CreateCommitOnBranchInput!
  $createPullRequest: CreatePullRequestInput!
) {
  createRef(input: $createRef) {
    ref {
      id
    }
  }
  createCommitOnBranch(input: $createCommit) {
    commit {
      oid
    }
  }
  createPullRequest(input: $createPullRequest) {
    pullRequest {
      number
      url
      headRefName
      headRefOid
      baseRefName
    }
  }
}
"""

MUTATION_FIELDS = ("createRef", "createCommitOnBranch", "createPullRequest")


def graphql_url_for(api_url: str) -> str:
    """GitHub's GraphQL endpoint for a REST base URL.

    https://api.github.com -> https://api.github.com/graphql; https://ghe.example/api/v3 -> https://ghe.example/api/graphql.
    """
    parts = urlsplit(api_url.rstrip("/"))
    path = parts.path
    path = path[: -len("/v3")] + "/graphql" if path.endswith("/api/v3") else path + "/graphql"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def target_query(
    *, owner: str, repo: str, base_branch: str | None, branch: str
) -> tuple[str, dict[str, str]]:
    """Round trip 1's document and variables: TARGET_QUERY, or DEFAULT_BASE_TARGET_QUERY without a base,
    with one `parentPath<i>` field per parent path of `branch` (none for a name without '/')."""
    variables = {"owner": owner, "name": repo, "headRef": f"refs/heads/{branch}"}
    parts = branch.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    aliases = [PREFIX_ALIAS.format(i) for i in range(len(parents))]
    variables.update({alias: f"refs/heads/{path}" for alias, path in zip(aliases, parents, strict=True)})
    shape = _DEFAULT_BASE if base_branch is None else _NAMED_BASE
    if base_branch is not None:
        variables["baseRef"] = f"refs/heads/{base_branch}"
    document = _TARGET_QUERY.format(
        **shape,
        prefix_variables="".join(f", ${alias}: String!" for alias in aliases),
        prefix_fields="".join(_PREFIX_FIELD.format(alias=alias) for alias in aliases),
    )
    return document, variables


def parent_path_conflicts(repository: Mapping[str, Any]) -> list[str]:
    """The existing branches (names) at a parent path of the new branch, from round trip 1's answer."""
    found = []
    for key, value in repository.items():
        if key.startswith(PREFIX_ALIAS.format("")) and isinstance(value, Mapping) and value.get("name"):
            found.append(str(value["name"]))
    return found


def open_pull_request_variables(
    *,
    repository_id: str,
    owner: str,
    repo: str,
    base_branch: str,
    base_oid: str,
    branch: str,
    files: Mapping[str, str],
    commit_message: str,
    title: str,
    body: str,
) -> dict[str, Any]:
    """Variables of OPEN_PULL_REQUEST_MUTATION: branch at `base_oid`, one commit adding `files`, the PR."""
    headline, _, rest = commit_message.strip().partition("\n")
    message: dict[str, str] = {"headline": headline.strip()}
    if rest.strip():
        message["body"] = rest.strip()
    additions = [
        {"path": path, "contents": base64.b64encode(text.encode("utf-8")).decode("ascii")}
        for path, text in files.items()
    ]
    return {
        "createRef": {"repositoryId": repository_id, "name": f"refs/heads/{branch}", "oid": base_oid},
        "createCommit": {
            "branch": {"repositoryNameWithOwner": f"{owner}/{repo}", "branchName": branch},
            "expectedHeadOid": base_oid,
            "fileChanges": {"additions": additions},
            "message": message,
        },
        "createPullRequest": {
            "repositoryId": repository_id,
            "baseRefName": base_branch,
            "headRefName": branch,
            "title": title,
            "body": body,
        },
    }


def errors_at(errors: list[dict[str, Any]], field_name: str) -> list[dict[str, Any]]:
    """The GraphQL errors of top-level field `field_name`, plus those of no field (document errors)."""
    found = []
    for error in errors:
        path = error.get("path")
        if not path or path[0] == field_name:
            found.append(error)
    return found
