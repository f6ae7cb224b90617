"""The forge's GraphQL subset (POST /api/graphql), executed by graphql-core against SCHEMA_SDL.

SCHEMA_SDL repeats the types, fields, arguments and inputs of GitHub's published schema that the forge serves,
with the same names and types (tests/github checks it against a vendored excerpt of the published schema).
Errors are answered as GitHub does: HTTP 200, `data` with the failed field null, `errors` with a `type`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    graphql_sync,
)

from aipm.local.forge.app import ForgeApp, ForgeError, RepoHandle, node_id, parse_node_id
from aipm.local.forge.state import PullRecord

SCHEMA_SDL = """
scalar Base64String
scalar GitObjectID
scalar URI

interface GitObject {
  id: ID!
  oid: GitObjectID!
}

type Commit implements GitObject {
  id: ID!
  oid: GitObjectID!
  url: URI!
}

type Ref {
  id: ID!
  name: String!
  prefix: String!
  target: GitObject
}

type Repository {
  defaultBranchRef: Ref
  id: ID!
  name: String!
  nameWithOwner: String!
  ref(qualifiedName: String!): Ref
  url: URI!
}

enum PullRequestState {
  CLOSED
  MERGED
  OPEN
}

type PullRequest {
  baseRefName: String!
  baseRefOid: GitObjectID!
  body: String!
  headRefName: String!
  headRefOid: GitObjectID!
  id: ID!
  isDraft: Boolean!
  number: Int!
  state: PullRequestState!
  title: String!
  url: URI!
}

type Query {
  repository(followRenames: Boolean = true, name: String!, owner: String!): Repository
}

input CommittableBranch {
  branchName: String
  id: ID
  repositoryNameWithOwner: String
}

input CommitMessage {
  body: String
  headline: String!
}

input FileAddition {
  contents: Base64String!
  path: String!
}

input FileDeletion {
  path: String!
}

input FileChanges {
  additions: [FileAddition!] = []
  deletions: [FileDeletion!] = []
}

input CreateRefInput {
  clientMutationId: String
  name: String!
  oid: GitObjectID!
  repositoryId: ID!
}

type CreateRefPayload {
  clientMutationId: String
  ref: Ref
}

input CreateCommitOnBranchInput {
  branch: CommittableBranch!
  clientMutationId: String
  expectedHeadOid: GitObjectID!
  fileChanges: FileChanges
  message: CommitMessage!
}

type CreateCommitOnBranchPayload {
  clientMutationId: String
  commit: Commit
  ref: Ref
}

input CreatePullRequestInput {
  baseRefName: String!
  body: String
  clientMutationId: String
  draft: Boolean = false
  headRefName: String!
  headRepositoryId: ID
  maintainerCanModify: Boolean = true
  repositoryId: ID!
  title: String!
}

type CreatePullRequestPayload {
  clientMutationId: String
  pullRequest: PullRequest
}

input DeleteRefInput {
  clientMutationId: String
  refId: ID!
}

type DeleteRefPayload {
  clientMutationId: String
}

type Mutation {
  createCommitOnBranch(input: CreateCommitOnBranchInput!): CreateCommitOnBranchPayload
  createPullRequest(input: CreatePullRequestInput!): CreatePullRequestPayload
  createRef(input: CreateRefInput!): CreateRefPayload
  deleteRef(input: DeleteRefInput!): DeleteRefPayload
}
"""

_ERROR_TYPES = {403: "FORBIDDEN", 404: "NOT_FOUND", 409: "STALE_DATA", 422: "UNPROCESSABLE"}

Json = dict[str, Any]


class TypedGraphQLError(Exception):
    """A resolver failure with GitHub's error `type` (NOT_FOUND, UNPROCESSABLE, STALE_DATA, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def execute(app: ForgeApp, request: Any) -> Json:
    """Run one GraphQL request document ({query, variables, operationName}); the JSON answer (HTTP 200)."""
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        return {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
    variables = request.get("variables")
    operation = request.get("operationName")
    result = graphql_sync(
        SCHEMA,
        request["query"],
        context_value=app,
        variable_values=variables if isinstance(variables, dict) else None,
        operation_name=operation if isinstance(operation, str) else None,
    )
    answer: Json = {}
    if result.data is not None:
        answer["data"] = result.data
    if result.errors:
        answer["errors"] = [_error_json(error) for error in result.errors]
    return answer


def _error_json(error: GraphQLError) -> Json:
    found: Json = {"message": error.message}
    original = error.original_error
    if isinstance(original, TypedGraphQLError):
        found["type"] = original.kind
    elif original is not None:
        found["type"] = "INTERNAL"
        found["message"] = "Something went wrong while executing your query."
    if error.path:
        found["path"] = list(error.path)
    if error.locations:
        found["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    return found


def _typed(err: ForgeError) -> TypedGraphQLError:
    """A domain error as GitHub's GraphQL API words it (validation errors flattened into the message)."""
    details = [e.get("message") or f"{e.get('field', '')} is {e.get('code', 'invalid')}" for e in err.errors]
    return TypedGraphQLError(_ERROR_TYPES.get(err.status, "INTERNAL"), "; ".join(details) or err.message)


# ---- object shapes ---------------------------------------------------------------------------------------


def _repository(app: ForgeApp, repo: RepoHandle) -> Json:
    return {
        "id": node_id("R", repo.full_name),
        "name": repo.name,
        "nameWithOwner": repo.full_name,
        "url": f"{app.urls.base}/{repo.full_name}",
        "_repo": repo,
    }


def _commit(app: ForgeApp, repo: RepoHandle, oid: str) -> Json:
    return {
        "id": node_id("C", f"{repo.full_name}@{oid}"),
        "oid": oid,
        "url": f"{app.urls.base}/{repo.full_name}/commit/{oid}",
    }


def _ref(app: ForgeApp, repo: RepoHandle, branch: str) -> Json | None:
    tip = repo.git.branch_tip(branch)
    if tip is None:
        return None
    return {
        "id": node_id("REF", f"{repo.full_name}:refs/heads/{branch}"),
        "name": branch,
        "prefix": "refs/heads/",
        "target": _commit(app, repo, tip),
    }


def _pull_request(app: ForgeApp, repo: RepoHandle, pull: PullRecord) -> Json:
    return {
        "id": node_id("PR", f"{repo.full_name}#{pull.number}"),
        "number": pull.number,
        "url": f"{app.urls.base}/{repo.full_name}/pull/{pull.number}",
        "title": pull.title,
        "body": pull.body,
        "state": pull.state.upper(),
        "isDraft": pull.draft,
        "headRefName": pull.head_ref,
        "headRefOid": pull.head_sha,
        "baseRefName": pull.base_ref,
        "baseRefOid": pull.base_sha,
    }


# ---- resolvers -------------------------------------------------------------------------------------------

Mutation = Callable[[ForgeApp, Json], Json]
_MUTATIONS: dict[str, Mutation] = {}


def _mutation(field_name: str) -> Callable[[Mutation], Mutation]:
    """Register `body(app, input) -> payload` as the resolver of Mutation.`field_name`."""

    def register(body: Mutation) -> Mutation:
        _MUTATIONS[field_name] = body
        return body

    return register


def _resolve_mutation(field_name: str) -> Callable[..., Json]:
    """A resolver running a registered mutation under its fault plan, with GitHub's error types."""
    body = _MUTATIONS[field_name]

    def resolve(_root: Any, info: GraphQLResolveInfo[ForgeApp], **args: Any) -> Json:
        given = args["input"]

        def work() -> Json:
            try:
                payload = body(info.context, given)
            except ForgeError as err:
                raise _typed(err) from err
            return {"clientMutationId": given.get("clientMutationId"), **payload}

        return _run(info.context, f"graphql.{field_name}", work)

    return resolve


def _resolve_repository(_root: Any, info: GraphQLResolveInfo[ForgeApp], **args: Any) -> Json:
    app = info.context

    def work() -> Json:
        try:
            return _repository(app, app.repository(args["owner"], args["name"]))
        except ForgeError as err:
            message = f"Could not resolve to a Repository with the name '{args['owner']}/{args['name']}'."
            raise TypedGraphQLError("NOT_FOUND", message) from err

    return _run(app, "graphql.repository", work)


def _resolve_ref(repository: Json, info: GraphQLResolveInfo[ForgeApp], **args: Any) -> Json | None:
    name = str(args["qualifiedName"])
    if name.startswith("refs/") and not name.startswith("refs/heads/"):
        return None  # only branches live in the forge
    return _ref(info.context, repository["_repo"], name.removeprefix("refs/heads/"))


def _resolve_default_branch_ref(repository: Json, info: GraphQLResolveInfo[ForgeApp]) -> Json | None:
    repo: RepoHandle = repository["_repo"]
    return _ref(info.context, repo, repo.git.default_branch())


@_mutation("createRef")
def _create_ref(app: ForgeApp, given: Json) -> Json:
    repo = _repository_by_id(app, given["repositoryId"])
    try:
        app.create_ref(repo, given["name"], given["oid"])
    except ForgeError as err:
        if "already exists" not in err.message:
            raise
        message = f'A ref named "{given["name"]}" already exists in the repository.'
        raise TypedGraphQLError("UNPROCESSABLE", message) from err
    return {"ref": _ref(app, repo, given["name"].removeprefix("refs/heads/"))}


@_mutation("createCommitOnBranch")
def _create_commit_on_branch(app: ForgeApp, given: Json) -> Json:
    repo, branch = _committable_branch(app, given["branch"])
    changes = given.get("fileChanges") or {}
    additions: dict[str, bytes] = {}
    for addition in changes.get("additions") or []:
        try:
            additions[addition["path"]] = base64.b64decode(addition["contents"], validate=True)
        except binascii.Error as err:
            message = f"The contents of the file at {addition['path']} are not valid Base64."
            raise TypedGraphQLError("UNPROCESSABLE", message) from err
    deletions = [deletion["path"] for deletion in changes.get("deletions") or []]
    if len(set(additions) | set(deletions)) != len(additions) + len(deletions):
        raise TypedGraphQLError("UNPROCESSABLE", "A path was given more than once in fileChanges.")
    headline, body = given["message"]["headline"], given["message"].get("body")
    commit = app.commit_files(
        repo,
        branch=branch,
        additions=additions,
        deletions=deletions,
        message=f"{headline}\n\n{body}" if body else headline,
        expected_head=given["expectedHeadOid"],
    )
    return {"commit": _commit(app, repo, commit), "ref": _ref(app, repo, branch)}


@_mutation("createPullRequest")
def _create_pull_request(app: ForgeApp, given: Json) -> Json:
    repo = _repository_by_id(app, given["repositoryId"])
    pull = app.create_pull(
        repo,
        head=given["headRefName"],
        base=given["baseRefName"],
        title=given["title"],
        body=given.get("body") or "",
        draft=bool(given.get("draft")),
    )
    return {"pullRequest": _pull_request(app, repo, pull)}


@_mutation("deleteRef")
def _delete_ref(app: ForgeApp, given: Json) -> Json:
    full_name, _, ref = (parse_node_id(str(given["refId"]), "REF") or "").partition(":")
    owner, _, name = full_name.partition("/")
    if not ref.startswith("refs/heads/") or not name:
        message = f"Could not resolve to a node with the global id of '{given['refId']}'"
        raise TypedGraphQLError("NOT_FOUND", message)
    app.delete_branch(app.repository(owner, name), ref.removeprefix("refs/heads/"))
    return {}


def _run(app: ForgeApp, route: str, work: Callable[[], Json]) -> Json:
    """Run a resolver's `work` under the fault plan of `route` (fail before it, or after: after_effect)."""
    fault = app.faults.record_call(route)
    if fault is not None and not fault.after_effect:
        raise TypedGraphQLError(_ERROR_TYPES.get(fault.status, "INTERNAL"), fault.message)
    result = work()
    if fault is not None:
        raise TypedGraphQLError(_ERROR_TYPES.get(fault.status, "INTERNAL"), fault.message)
    return result


def _repository_by_id(app: ForgeApp, value: str) -> RepoHandle:
    repo = app.repository_by_node_id(value)
    if repo is None:
        raise TypedGraphQLError("NOT_FOUND", f"Could not resolve to a node with the global id of '{value}'")
    return repo


def _committable_branch(app: ForgeApp, branch: Json) -> tuple[RepoHandle, str]:
    """The repository and branch name a CommittableBranch input names (by ref id, or name with owner)."""
    if branch.get("id"):
        full_name, _, ref = (parse_node_id(str(branch["id"]), "REF") or "").partition(":")
        name = ref.removeprefix("refs/heads/")
    else:
        full_name = str(branch.get("repositoryNameWithOwner") or "")
        name = str(branch.get("branchName") or "").removeprefix("refs/heads/")
    owner, _, repo_name = full_name.partition("/")
    if not name or not repo_name:
        message = "A branch must be given by id, or by repositoryNameWithOwner and branchName."
        raise TypedGraphQLError("UNPROCESSABLE", message)
    try:
        return app.repository(owner, repo_name), name
    except ForgeError as err:
        message = f"Could not resolve to a Repository with the name '{full_name}'."
        raise TypedGraphQLError("NOT_FOUND", message) from err


def _build_schema() -> GraphQLSchema:
    schema = build_schema(SCHEMA_SDL)
    resolvers: dict[tuple[str, str], Callable[..., Any]] = {
        ("Query", "repository"): _resolve_repository,
        ("Repository", "ref"): _resolve_ref,
        ("Repository", "defaultBranchRef"): _resolve_default_branch_ref,
    }
    resolvers.update({("Mutation", name): _resolve_mutation(name) for name in _MUTATIONS})
    for (type_name, field_name), resolver in resolvers.items():
        owner = schema.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType)
        owner.fields[field_name].resolve = resolver
    git_object = schema.get_type("GitObject")
    assert isinstance(git_object, GraphQLInterfaceType)
    git_object.resolve_type = lambda _value, _info, _type: "Commit"
    return schema


SCHEMA = _build_schema()
