"""`make demo`: one sample task through the whole local stack, exactly as the frontend would send it.

Starts the local stack, POSTs the task, follows the job to its end, prints the PR (URL, branch, commits,
the agent's diff, comments) and the job's timeline, shuts everything down. Exit status 0 only if the job
completed; a stack that does not start (or a job that does not end) is one line `demo: error: …` on stderr
with the failing part's log tail, and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackError, StackOptions, wait_for_job

SAMPLE_TASK = {
    "owner": DEMO_OWNER,
    "repo": DEMO_REPO,
    "branchName": "feature/add-export",
    "taskTitle": "Add export button",
    "objective": "User can export data",
    "prTitle": "feat: Add export button",
    "constraints": "Use existing button patterns",
    "acceptanceCriteria": ["Button appears", "Export works"],
}
FOLLOW_TIMEOUT_S = 180


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def print_step(entry: dict[str, Any]) -> None:
    print(f"  {entry['at']}  {entry['step']:<11} {entry['detail']}")


def show_pull_request(stack: LocalStack, delegated: dict[str, Any], job: dict[str, Any]) -> None:
    branch = delegated["branchName"]
    repo = stack.demo_repo
    print(f"\n== Pull request #{delegated['number']}: {delegated['html_url']}")
    print(f"branch: {branch}  (base {job['baseBranch']})")
    print("commits on the branch:")
    print(git(repo, "log", "--format=  %h %s", f"{job['baseBranch']}..{branch}"), end="")
    if job.get("commitSha"):
        print(f"\nthe agent's change ({job['commitSha'][:12]}):")
        print(git(repo, "show", "--stat", "--patch", "--format=", job["commitSha"]))
    for comment in stack.forge.comments(DEMO_OWNER, DEMO_REPO, delegated["number"]):
        print(f"PR comment: {comment['body']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aipm.local.demo", description="One sample task end to end."
    )
    parser.add_argument("--cli", default="emulator", metavar="PROFILE", help="the agent's CLI profile")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return run(args.cli)
    except StackError as problem:
        print(f"demo: error: {problem}", file=sys.stderr, flush=True)
        return 1


def run(cli: str) -> int:
    """The demo with the agent's CLI profile `cli`. Raises StackError if the stack does not start."""
    with tempfile.TemporaryDirectory(prefix="aipm-demo-") as tmp:
        print(
            "Starting the local stack (moto, git forge, API gateway + Lambda handlers, agent with 2 slots)…",
            flush=True,
        )
        started = time.monotonic()
        with LocalStack(Path(tmp), StackOptions(emulator_work_s=1.0, cli_profile=cli)) as stack:
            print(f"ready in {time.monotonic() - started:.1f} s; API at {stack.api_url}\n")
            print("== POST /api/personal-delegate")
            status, delegated = stack.api("POST", "/api/personal-delegate", SAMPLE_TASK)
            print(f"{status} {delegated}")
            if status != 201:
                return 1
            print(f"\n== Following job {delegated['jobId']}")
            job = wait_for_job(stack, delegated["jobId"], timeout_s=FOLLOW_TIMEOUT_S, on_step=print_step)
            show_pull_request(stack, delegated, job)
            print(f"job {job['jobId']}: {job['status']} — {job.get('reason')}")
            return 0 if job["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
