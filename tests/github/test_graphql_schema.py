"""The GraphQL the client sends, and the forge serves, checked against GitHub's published schema (excerpt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import urllib3
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    OperationDefinitionNode,
    build_schema,
    parse,
    specified_scalar_types,
    validate,
)
from graphql.execution.values import get_variable_values

from aipm.local.forge import Forge
from aipm.local.forge.graphql_api import SCHEMA as FORGE_SCHEMA
from lambda_src.github import GitHubClient
from lambda_src.github.graphql_documents import (
    DEFAULT_BASE_TARGET_QUERY,
    OPEN_PULL_REQUEST_MUTATION,
    TARGET_QUERY,
    target_query,
)
from tests.forge.support import TOKEN, Repo
from tests.github.support import open_pr

PUBLISHED = build_schema((Path(__file__).parent / "fixtures" / "github_schema_excerpt.graphql").read_text())


class RecordingPoolManager(urllib3.PoolManager):
    """A real pool manager that also keeps every request body it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, Any]] = []

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        self.sent.append((method, url, kw.get("body")))
        return super().urlopen(method, url, redirect=redirect, **kw)


@pytest.mark.parametrize(
    "document",
    [TARGET_QUERY, DEFAULT_BASE_TARGET_QUERY, OPEN_PULL_REQUEST_MUTATION],
    ids=["query", "query-default-base", "mutation"],
)
def test_the_client_documents_are_valid_against_the_published_schema(document: str) -> None:
    assert validate(PUBLISHED, parse(document)) == []


@pytest.mark.parametrize("base_branch", ["main", None], ids=["named-base", "default-base"])
def test_the_variables_the_client_sends_fit_the_published_input_types(
    forge: Forge, repo: Repo, base_branch: str | None
) -> None:
    recorder = RecordingPoolManager()
    client = GitHubClient(forge.api_url, lambda: TOKEN, http=recorder)

    open_pr(client, repo.name, rest=False, base_branch=base_branch)

    posts = [json.loads(body) for method, url, body in recorder.sent if url == forge.graphql_url]
    assert [method for method, _, _ in recorder.sent] == ["POST", "POST"]
    for payload in posts:
        [operation] = parse(payload["query"]).definitions
        assert isinstance(operation, OperationDefinitionNode)
        coerced = get_variable_values(PUBLISHED, operation.variable_definitions or [], payload["variables"])
        assert not isinstance(coerced, list), [error.message for error in coerced]


def _signature(named: GraphQLNamedType) -> dict[str, Any]:
    """Field -> (type, {argument: (type, default)}) for output types; field -> (type, default) for inputs."""
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return {
            name: (str(field.type), {arg: (str(a.type), a.default_value) for arg, a in field.args.items()})
            for name, field in named.fields.items()
        }
    if isinstance(named, GraphQLInputObjectType):
        return {name: (str(field.type), field.default_value) for name, field in named.fields.items()}
    if isinstance(named, GraphQLEnumType):
        return dict.fromkeys(named.values, "value")
    assert isinstance(named, GraphQLScalarType)
    return {}


def test_the_forge_serves_a_subset_of_the_published_schema() -> None:
    served = {
        name: named
        for name, named in FORGE_SCHEMA.type_map.items()
        if not name.startswith("__") and name not in specified_scalar_types
    }
    assert served  # the forge does serve GraphQL
    for name, named in served.items():
        published = PUBLISHED.type_map.get(name)
        assert published is not None, f"{name} is not in GitHub's schema"
        assert type(published) is type(named), name
        ours, theirs = _signature(named), _signature(published)
        if isinstance(named, GraphQLInputObjectType | GraphQLEnumType):
            assert ours == theirs, name  # inputs the forge accepts are complete, not a subset
        else:
            assert {field: theirs.get(field) for field in ours} == ours, name


@pytest.mark.parametrize("base_branch", [None, "main"], ids=["default-base", "named-base"])
def test_the_parent_path_lookups_are_valid_against_the_published_schema(base_branch: str | None) -> None:
    document, variables = target_query(owner="o", repo="r", base_branch=base_branch, branch="a/b/c-1")

    assert validate(PUBLISHED, parse(document)) == []
    assert {k: v for k, v in variables.items() if k.startswith("parentPath")} == {
        "parentPath0": "refs/heads/a",
        "parentPath1": "refs/heads/a/b",
    }
