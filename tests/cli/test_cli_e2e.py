"""The `aipm` console script against the real local stack (moto, forge, gateway + handlers, agent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aipm.cli.errors import Exit
from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack
from tests.cli.conftest import Result, run

pytestmark = pytest.mark.e2e

HAPPY = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]


@pytest.fixture
def env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AIPM_API_URL", stack.api_url)
    monkeypatch.setenv("AIPM_API_TOKEN", stack.api_token)
    return {**os.environ, "AIPM_API_URL": stack.api_url, "AIPM_API_TOKEN": stack.api_token}


def console_script(*argv: str, env: dict[str, str]) -> Result:
    """The installed `aipm` entry point (falls back to `python -m aipm.cli` if not on PATH)."""
    exe = shutil.which("aipm", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "aipm.cli"]
    done = subprocess.run([*cmd, *argv], env=env, capture_output=True, text=True, timeout=120)
    return Result(done.returncode, done.stdout, done.stderr)


def steps_printed(err: str) -> list[str]:
    return [line.split()[2] for line in err.splitlines() if line.startswith("  ") and "Z " in line]


def test_delegate_from_a_yaml_file_follows_the_real_job_to_completion(
    stack: LocalStack, env: dict[str, str], tmp_path: Path
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        f"owner: {DEMO_OWNER}\nrepo: {DEMO_REPO}\nbranchName: feature/cli-export\ntaskTitle: CLI export\n"
        "objective: User can export data\nacceptanceCriteria: [Button appears, Export works]\n"
    )
    result = console_script("delegate", "-f", str(task), "--interval", "0.2", env=env)

    assert result.code == Exit.OK, result.err
    assert steps_printed(result.err) == HAPPY
    assert "completed" in result.out and "docs/cli-export.md" in result.out
    pr_url = next(line.split()[1] for line in result.out.splitlines() if line.startswith("PR:"))
    assert pr_url.startswith(stack.forge.base_url)

    job_id = result.out.split()[1].rstrip(":")
    shown = json.loads(console_script("jobs", "show", job_id, "--json", env=env).out)
    assert shown["status"] == "completed" and shown["prUrl"] == pr_url
    assert [e["step"] for e in shown["timeline"]] == HAPPY


def test_no_wait_then_jobs_list_show_logs_and_workers(stack: LocalStack, env: dict[str, str]) -> None:
    submitted = run(
        "--json", "delegate", "--repo", f"{DEMO_OWNER}/{DEMO_REPO}", "--title", "CLI listed",
        "--objective", "Appear in the list", "--no-wait",
    )  # fmt: skip
    assert submitted.code == Exit.OK, submitted.err
    job_id = json.loads(submitted.out)["jobId"]

    followed = run("jobs", "show", job_id, "--follow", "--interval", "0.2", "--timeout", "90")
    assert followed.code == Exit.OK, followed.err

    listed = json.loads(run("jobs", "list", "--json", "--repo", f"{DEMO_OWNER}/{DEMO_REPO}").out)
    assert job_id in [j["jobId"] for j in listed["jobs"]]
    completed = json.loads(run("--json", "jobs", "list", "--status", "completed").out)["jobs"]
    assert all(j["status"] == "completed" for j in completed) and job_id in [j["jobId"] for j in completed]

    logs = run("jobs", "logs", job_id)
    assert logs.code == Exit.OK

    workers = json.loads(run("--json", "workers").out)
    assert [a["agentId"] for a in workers["agents"]] == ["local-agent-1"]
    assert workers["totalSlots"] == 2 and workers["healthyAgents"] == 1


def test_cancel_a_running_job_then_retry_it_to_completion(stack: LocalStack, env: dict[str, str]) -> None:
    submitted = run(
        "--json", "delegate", "--repo", f"{DEMO_OWNER}/{DEMO_REPO}", "--title", "CLI cancel",
        "--objective", "Take a while <!-- emulator: slow=4 -->", "--no-wait",
    )  # fmt: skip
    job_id = json.loads(submitted.out)["jobId"]
    deadline = time.monotonic() + 60
    while json.loads(run("--json", "jobs", "show", job_id).out)["status"] != "generating":
        assert time.monotonic() < deadline, "the job never started generating"
        time.sleep(0.2)

    cancelled = run("jobs", "cancel", job_id)
    assert cancelled.code == Exit.OK, cancelled.err
    assert f"job {job_id}: cancelled" in cancelled.out
    assert run("jobs", "cancel", job_id).code == Exit.USAGE  # 409: it has ended

    ended = run("jobs", "show", job_id, "--follow", "--interval", "0.2", "--timeout", "60")
    assert ended.code == Exit.JOB_UNSUCCESSFUL
    assert json.loads(run("--json", "jobs", "show", job_id).out)["status"] == "cancelled"

    retried = run("jobs", "retry", job_id, "--follow", "--interval", "0.2", "--timeout", "90")
    assert retried.code == Exit.OK, retried.out + retried.err
    assert steps_printed(retried.err) == HAPPY[1:]  # after the "retried" entry the retry printed
    timeline = [e["step"] for e in json.loads(run("--json", "jobs", "show", job_id).out)["timeline"]]
    assert timeline[timeline.index("cancelled") :] == ["cancelled", "retried", *HAPPY[1:]]


def test_errors_against_the_real_stack(stack: LocalStack, env: dict[str, str]) -> None:
    bad_token = console_script("jobs", "list", env={**env, "AIPM_API_TOKEN": "not-the-token"})
    assert bad_token.code == Exit.API and "rejected the credentials" in bad_token.err
    assert "not-the-token" not in bad_token.err

    bad_branch = run(
        "delegate", "--repo", f"{DEMO_OWNER}/{DEMO_REPO}", "--title", "Bad", "--objective", "x",
        "--branch", "feature/..oops", "--no-wait",
    )  # fmt: skip
    assert bad_branch.code == Exit.USAGE and "branchName" in bad_branch.err

    unknown = run("jobs", "show", "f" * 32)
    assert unknown.code == Exit.USAGE and "job_not_found" in unknown.err
