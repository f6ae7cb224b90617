"""Helpers of the GitHub client tests."""

from __future__ import annotations

import pytest

from lambda_src.github import GitHubClient, PullRequest
from tests.forge.support import OWNER

TASK = "# Add export button\n\nObjective: the user can export data.\n"
BRANCH = "feature/add-export-1733356800123"
BOTH_PATHS = pytest.mark.parametrize("rest", [False, True], ids=["graphql", "rest"])


def open_pr(
    client: GitHubClient,
    repo: str,
    *,
    rest: bool,
    files: dict[str, str] | None = None,
    base_branch: str | None = "main",
) -> PullRequest:
    opener = client.open_task_pull_request_rest if rest else client.open_task_pull_request
    return opener(
        owner=OWNER,
        repo=repo,
        base_branch=base_branch,
        branch=BRANCH,
        files=files or {"TASK.md": TASK},
        commit_message="feat: Add export button\n\nTask of job 42",
        title="feat: Add export button",
        body="The task is in TASK.md.",
    )
