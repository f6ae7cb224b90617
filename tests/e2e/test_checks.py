"""Checks before a push, end to end through the local stack: `.aipm.yml` on the base branch, the checks run in
the job's sandbox after the CLI (emulator profile), failures go back to the CLI for another turn, and a job
whose checks still fail ends `checks_failed` with nothing pushed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aipm.local.stack import DEMO_OWNER, LocalStack, StackOptions, wait_for_job
from tests.e2e.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        tmp_path_factory.mktemp("stack"), StackOptions(emulator_work_s=0.1, sweep_interval_s=2)
    ) as s:
        yield s


def delegate(stack: LocalStack, repo: str, checks_yaml: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A repository whose main branch declares `checks_yaml`, a task on it, the job once it ended."""
    stack.forge.create_repository(
        DEMO_OWNER, repo, files={"README.md": f"# {repo}\n", ".aipm.yml": checks_yaml}
    )
    task = {"owner": DEMO_OWNER, "repo": repo, "taskTitle": "Add notes", "objective": "Write notes"}
    status, delegated = stack.api("POST", "/api/personal-delegate", task)
    assert status == 201, delegated
    return delegated, wait_for_job(stack, delegated["jobId"], timeout_s=120)


def git(stack: LocalStack, repo: str, *args: str) -> str:
    path = stack.demo_repo.parent / f"{repo}.git"
    return subprocess.run(
        ["git", "--git-dir", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def comment_of(stack: LocalStack, repo: str, number: int, marker: str) -> str:
    [comment] = eventually(
        lambda: [c for c in stack.forge.comments(DEMO_OWNER, repo, number) if marker in c["body"]]
    )
    return str(comment["body"])


def rounds(job: dict[str, Any]) -> list[str]:
    return [e["detail"] for e in job["timeline"] if e["detail"].startswith("checks round")]


def test_a_check_that_fails_until_the_second_turn_is_pushed_after_two_rounds(stack: LocalStack) -> None:
    # The emulator writes docs/<slug of TASK.md's first heading>.md: the second turn's TASK.md opens with
    # "# Checks failed (round 1)", so this check passes only after the CLI's second turn.
    yaml = (
        "checks:\n"
        "  - name: second turn done\n"
        "    run: [test, -e, docs/checks-failed-round-1.md]\n"
        "    timeout_s: 30\n"
        "max_rounds: 2\n"
    )
    delegated, job = delegate(stack, "checked", yaml)

    assert job["status"] == "completed", job
    assert rounds(job) == [
        "checks round 1: 1 of 1 failed (second turn done: failed (exit 1))",
        "checks round 2: all passed (second turn done: passed)",
    ]
    branch = delegated["branchName"]
    files = git(stack, "checked", "show", "--name-only", "--format=", branch).split()
    assert sorted(files) == ["docs/add-notes.md", "docs/checks-failed-round-1.md"]  # TASK.md put back
    body = comment_of(stack, "checked", delegated["number"], "pushed")
    assert "✅ ` second turn done ` — passed" in body and "Checks ran 2 round(s)" in body


def test_a_check_that_never_passes_ends_checks_failed_and_pushes_nothing(stack: LocalStack) -> None:
    check = "run: [sh, -c, 'echo style error in notes.py >&2; exit 3']"  # the repository's own command
    yaml = f"checks:\n  - name: lint\n    {check}\nmax_rounds: 2\n"
    delegated, job = delegate(stack, "red", yaml)

    assert job["status"] == "checks_failed", (job["reason"], job["timeline"][-3:])
    assert job["reason"] == "checks still failing after 2 round(s): lint; nothing was pushed"
    assert len(rounds(job)) == 2 and job["commitSha"] is None
    assert "style error in notes.py" in job["outputTail"]
    branch = delegated["branchName"]
    assert git(stack, "red", "log", "--format=%s", f"main..{branch}").splitlines() == [
        f"AIPM task {delegated['jobId']}: add TASK.md"
    ]
    body = comment_of(stack, "red", delegated["number"], "checks_failed")
    assert "❌ ` lint ` — failed (exit 3)" in body and "style error in notes.py" in body


def test_a_hanging_check_is_killed_at_its_limit(stack: LocalStack) -> None:
    yaml = "checks:\n  - name: hangs\n    run: [sleep, '600']\n    timeout_s: 1\nmax_rounds: 1\n"
    started = time.monotonic()
    _, job = delegate(stack, "hangs", yaml)

    assert job["status"] == "checks_failed", (job["reason"], job["timeline"][-3:])
    assert rounds(job) == ["checks round 1: 1 of 1 failed (hangs: killed at its time limit (1 s))"]
    assert time.monotonic() - started < 60


def test_an_invalid_checks_file_fails_the_job_naming_the_problem(stack: LocalStack) -> None:
    _, job = delegate(stack, "invalid", "checks:\n  - name: x\n    run: echo hi\n")

    assert job["status"] == "failed", job
    assert job["reason"].startswith("the repository's checks are invalid: .aipm.yml: checks.0.run:")


def test_a_check_that_floods_its_output_is_killed_and_only_its_tail_kept(stack: LocalStack) -> None:
    """`yes` writes gigabytes within its 2 s: the agent keeps a bounded tail, not the output."""
    yaml = "checks:\n  - name: floods\n    run: ['yes', flood]\n    timeout_s: 2\nmax_rounds: 1\n"
    _, job = delegate(stack, "floods", yaml)

    assert job["status"] == "checks_failed", (job["reason"], job["timeline"][-3:])
    assert rounds(job) == ["checks round 1: 1 of 1 failed (floods: killed at its time limit (2 s))"]
    # Killed mid-write: the last line may be cut short; the tail is bounded whatever was printed.
    assert "flood\nflood\nflood\n" in job["outputTail"] and len(job["outputTail"]) <= 8 * 1024
