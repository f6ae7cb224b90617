"""Real CLIs headless through the whole local stack: real HTTP → the API Lambda handler (local gateway) →
moto → the git forge → the agent, whose slot runs Claude Code (``claude -p``), Codex (``codex exec``), Gemini
CLI (``gemini -p``), Qwen Code (``qwen -p``) — npm — or aider (``aider --message``, PyPI, in a virtual
environment whose base interpreter the sandbox policy mounts), pinned in aipm/local/clis.toml, one process
per job in its bubblewrap sandbox against the model stand-in. A job's change is pushed as one commit holding
exactly the stand-in's file (nothing the CLI wrote for itself); a model error fails the job with the reason
and pushes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aipm.local.clis import install
from aipm.local.stack import LocalStack, StackOptions, wait_for_job
from tests.e2e.real_cli_stack import agent_commits, assert_pushed_change, delegate, task

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(
    scope="module",
    params=["claude-headless", "codex-headless", "gemini-headless", "qwen-headless", "aider-headless"],
)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    install()  # the pinned CLIs (cached after the first run)
    options = StackOptions(
        cli_profile=request.param, pool_size=1, sweep_interval_s=2, job_timeout_s=60, lease_s=10
    )
    with LocalStack(tmp_path_factory.mktemp("headless-stack"), options) as s:
        yield s


def test_a_job_pushes_exactly_the_cli_s_change(stack: LocalStack) -> None:
    answer = delegate(stack, task("Add the Zanzibar report"))
    job = wait_for_job(stack, answer["jobId"], timeout_s=120)
    assert job["status"] == "completed", job
    assert_pushed_change(stack, answer["branchName"])


def test_a_model_error_fails_the_job_and_pushes_nothing(stack: LocalStack) -> None:
    answer = delegate(stack, task("Refused work", "Do it. <!-- model: error=400 -->"))
    job = wait_for_job(stack, answer["jobId"], timeout_s=180)
    assert job["status"] == "failed" and job["reason"], job
    assert agent_commits(stack, answer["branchName"]) == []
