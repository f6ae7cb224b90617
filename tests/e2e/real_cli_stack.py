"""Helpers for the end-to-end tests that run real CLIs through the whole local stack against the model
stand-in (tests/e2e/test_real_cli_pipeline.py, test_headless_pipeline.py): a task body, delegation through
the API, and the pushed branch read from the forge's bare repository."""

from __future__ import annotations

import subprocess
from typing import Any

from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.script import render_change
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack


def standin(stack: LocalStack) -> ModelStandin:
    assert stack.standin is not None, "the stack did not start the model stand-in"
    return stack.standin


def task(title: str, objective: str = "Say hello.") -> dict[str, Any]:
    return {
        "owner": DEMO_OWNER,
        "repo": DEMO_REPO,
        "branchName": "cli/" + title.lower().replace(" ", "-"),
        "taskTitle": title,
        "objective": objective,
        "prTitle": f"feat: {title}",
        "constraints": "",
        "acceptanceCriteria": ["It is done"],
    }


def delegate(stack: LocalStack, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = stack.api("POST", "/api/personal-delegate", body)
    assert status == 201, answer
    return answer


def git(stack: LocalStack, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), *args], capture_output=True, text=True, check=True
    ).stdout


def agent_commits(stack: LocalStack, branch: str) -> list[str]:
    return git(stack, "rev-list", f"main..{branch}").split()[:-1]  # the oldest is the API's TASK.md commit


def assert_pushed_change(stack: LocalStack, branch: str) -> None:
    """The branch's tip holds exactly the change the model stand-in derives from the branch's TASK.md."""
    assert len(agent_commits(stack, branch)) == 1
    path, content = render_change(git(stack, "show", f"{branch}:TASK.md"))
    assert git(stack, "show", f"{branch}:{path}") == content
    changed = git(stack, "diff", "--name-only", f"{branch}~1", branch).split()
    assert changed == [path]
