"""Real persistent CLIs through the whole local stack: real HTTP → the API Lambda handler (local gateway) →
moto → the git forge → the agent, whose one slot runs, in its bubblewrap sandbox against the model stand-in,
Gemini CLI over ACP (``gemini --acp``) or a full-screen CLI over the terminal driver judged on the rendered
screen — Gemini CLI, Claude Code or Codex (npm, pinned in aipm/local/clis.toml).

For each: two jobs in a row on the one slot with a reset between (one CLI start; the second job's model
requests hold nothing of the first), a cancel mid-turn and a timeout; the pushed commit's content is checked
each time."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from aipm.local.clis import install
from aipm.local.stack import LocalStack, StackOptions, wait_for_job
from tests.e2e.real_cli_stack import agent_commits, assert_pushed_change, delegate, standin, task

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOB_TIMEOUT_S = 25.0
# What the agent logs each time its slot's CLI has started: an ACP agent, or a CLI in a terminal.
STARTED = re.compile(r'"(?:ACP agent ready|CLI session ready)"')


@pytest.fixture(scope="module", params=["gemini-acp", "gemini-terminal", "claude-terminal", "codex-terminal"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    install()  # the pinned CLIs (cached after the first run)
    options = StackOptions(
        cli_profile=request.param, pool_size=1, sweep_interval_s=2, job_timeout_s=JOB_TIMEOUT_S, lease_s=10
    )
    with LocalStack(tmp_path_factory.mktemp("cli-stack"), options) as s:
        yield s


def cli_starts(stack: LocalStack) -> int:
    return len(STARTED.findall(stack.agents[0].log_path.read_text()))


def test_two_jobs_in_a_row_on_one_slot_with_a_reset_between(stack: LocalStack) -> None:
    first = delegate(stack, task("Add the Zanzibar report"))
    job = wait_for_job(stack, first["jobId"], timeout_s=120)
    assert job["status"] == "completed", job
    assert_pushed_change(stack, first["branchName"])
    starts = cli_starts(stack)
    mark = standin(stack).last_seq()

    second = delegate(stack, task("Add the Quokka summary"))
    job = wait_for_job(stack, second["jobId"], timeout_s=120)
    assert job["status"] == "completed", job
    assert_pushed_change(stack, second["branchName"])
    assert cli_starts(stack) == starts, "the CLI was restarted between the jobs, not reset"
    later = standin(stack).requests_since(mark)
    assert any("Quokka" in r.text for r in later)
    assert not [r.seq for r in later if "Zanzibar" in r.text], "the second job's CLI saw the first job"


def test_a_cancel_mid_turn_pushes_nothing_and_the_slot_goes_on(stack: LocalStack) -> None:
    slow = delegate(stack, task("Cancel me", "Take your time. <!-- model: slow=120 -->"))
    deadline = time.monotonic() + 60
    while standin(stack).waiting() == 0:  # the CLI is mid-turn: its model request is being held
        assert time.monotonic() < deadline, "the CLI never reached its slow model request"
        time.sleep(0.05)
    stack.store().cancel(slow["jobId"], "tester")
    job = wait_for_job(stack, slow["jobId"], timeout_s=30)
    assert job["status"] == "cancelled" and job["reason"] == "cancelled by tester", job
    after = delegate(stack, task("After the cancel"))
    assert wait_for_job(stack, after["jobId"], timeout_s=120)["status"] == "completed"
    assert_pushed_change(stack, after["branchName"])
    assert agent_commits(stack, slow["branchName"]) == []


def test_a_timeout_ends_the_job_and_pushes_nothing(stack: LocalStack) -> None:
    slow = delegate(stack, task("Time me out", "Never finish. <!-- model: hang -->"))
    started = time.monotonic()
    job = wait_for_job(stack, slow["jobId"], timeout_s=JOB_TIMEOUT_S + 60)
    assert job["status"] == "timed_out", job
    assert time.monotonic() - started < JOB_TIMEOUT_S + 40
    assert agent_commits(stack, slow["branchName"]) == []
    after = delegate(stack, task("After the timeout"))
    assert wait_for_job(stack, after["jobId"], timeout_s=120)["status"] == "completed"
    assert_pushed_change(stack, after["branchName"])
