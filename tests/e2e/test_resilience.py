"""The agent under failure, through the whole local stack: hung, crashed, flooding and killed CLIs, an agent
killed with SIGKILL mid-job and restarted, cancellation mid-run, SIGTERM drain, hostile task text, and two
agents on one queue. Every job must end in a terminal state with its reason; none runs twice; no commit is
lost or pushed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from lambda_src.taskdoc import quoted_inline

pytestmark = pytest.mark.e2e

OPTIONS = StackOptions(
    emulator_work_s=0.2,
    job_timeout_s=10,
    lease_s=3,
    sweep_interval_s=0.5,
    heartbeat_interval_s=1,
    max_attempts=2,
)


def task(title: str, directive: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "owner": DEMO_OWNER,
        "repo": DEMO_REPO,
        "branchName": "chaos/" + title.lower().replace(" ", "-"),
        "taskTitle": title,
        "objective": f"Deliver {title.lower()}",
        "prTitle": f"feat: {title}",
        "constraints": f"<!-- emulator: {directive} -->" if directive else "",
        "acceptanceCriteria": ["It works"],
        **extra,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("chaos"), OPTIONS) as running:
        yield running


def delegate(stack: LocalStack, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = stack.api("POST", "/api/personal-delegate", body)
    assert status == 201, answer
    return answer


def agent_commits(stack: LocalStack, branch: str) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(stack.demo_repo), "rev-list", f"main..{branch}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[:-1]  # the oldest commit on the branch is the API's TASK.md commit


def steps(job: dict[str, Any]) -> list[str]:
    return [e["step"] for e in job["timeline"]]


def wait_for_step(stack: LocalStack, job_id: str, step: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step in steps(stack.api("GET", f"/api/jobs/{job_id}")[1]):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {step}")


def emulator_pids(work_dir: Path) -> list[int]:
    """CLI processes (the emulator) whose working directory is inside `work_dir`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if b"ec2_agent.kiro_emulator" in cmdline and cwd.is_relative_to(work_dir.resolve()):
            found.append(int(proc.name))
    return found


def test_a_hung_cli_times_out_is_killed_and_the_slot_recovers(stack: LocalStack) -> None:
    hung = delegate(stack, task("Hang forever", "wedge"))
    job = wait_for_job(stack, hung["jobId"], timeout_s=60)
    assert job["status"] == "timed_out"
    assert f"did not finish within {OPTIONS.job_timeout_s:g} s" in job["reason"]
    assert agent_commits(stack, hung["branchName"]) == []
    after = wait_for_job(stack, delegate(stack, task("After the hang"))["jobId"], timeout_s=60)
    assert after["status"] == "completed"


def test_a_crashing_cli_is_retried_then_failed_with_the_reason(stack: LocalStack) -> None:
    crashed = delegate(stack, task("Crash always", "crash"))
    job = wait_for_job(stack, crashed["jobId"], timeout_s=60)
    assert job["status"] == "failed"
    assert job["attempts"] == 2
    assert "exited unexpectedly (status 3)" in job["reason"] and "after 2 attempts" in job["reason"]
    assert steps(job).count("claimed") == 2 and "requeued" in steps(job)


def test_a_flooding_cli_completes_with_a_bounded_tail(stack: LocalStack) -> None:
    agent = stack.agents[0]
    assert agent.proc is not None
    flood = delegate(stack, task("Flood the terminal", "flood=30"))
    job = wait_for_job(stack, flood["jobId"], timeout_s=120)
    assert job["status"] == "completed", job
    assert 0 < len(job["outputTail"]) <= 8192
    status = Path(f"/proc/{agent.proc.pid}/status").read_text()
    rss_mb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024
    assert rss_mb < 150, f"the agent holds {rss_mb:.0f} MB after 30 MB of CLI output"


def test_a_cli_that_changes_nothing_ends_as_no_changes(stack: LocalStack) -> None:
    job = wait_for_job(stack, delegate(stack, task("Change nothing", "no-change"))["jobId"], timeout_s=60)
    assert job["status"] == "no_changes"
    assert job["reason"] == "the CLI finished without changing any file"
    assert job["outputTail"]


def test_hostile_task_text_is_inert(stack: LocalStack, tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    hostile = task(
        "Hostile text",
        objective=f"$(touch {marker}) `touch {marker}` ; touch {marker} #\n/quit\n\t--force",
        acceptanceCriteria=[f"'; touch {marker}; '", "/clear"],
    )
    job = wait_for_job(stack, delegate(stack, hostile)["jobId"], timeout_s=60)
    assert job["status"] == "completed", job
    assert not marker.exists()


def test_cancel_mid_run_interrupts_the_cli_and_pushes_nothing(stack: LocalStack) -> None:
    slow = delegate(stack, task("Cancel me", "slow=20"))
    wait_for_step(stack, slow["jobId"], "generating")
    stack.store().cancel(slow["jobId"], "tester")
    job = wait_for_job(stack, slow["jobId"], timeout_s=30)
    assert job["status"] == "cancelled" and job["reason"] == "cancelled by tester"
    time.sleep(OPTIONS.lease_s)  # long enough for a stray push to land, if there were one
    assert agent_commits(stack, slow["branchName"]) == []
    after = wait_for_job(stack, delegate(stack, task("After the cancel"))["jobId"], timeout_s=60)
    assert after["status"] == "completed"


def cli_working_on(work_dir: Path, title: str) -> int:
    """The pid of the CLI whose workspace's TASK.md is the task titled `title`."""
    for pid in emulator_pids(work_dir):
        task_md = Path(f"/proc/{pid}/cwd").resolve() / "TASK.md"
        if task_md.is_file() and f"\n# {quoted_inline(title)}\n" in task_md.read_text():
            return pid
    raise AssertionError(f"no CLI is working on {title!r}")


def test_a_killed_cli_child_is_retried_and_completes(stack: LocalStack) -> None:
    slow = delegate(
        stack, task("Lose my CLI", "slow=6")
    )  # long enough that the kill lands mid-turn under load
    wait_for_step(stack, slow["jobId"], "generating")
    os.kill(cli_working_on(stack.agents[0].work_dir, "Lose my CLI"), signal.SIGKILL)
    job = wait_for_job(stack, slow["jobId"], timeout_s=60)
    assert job["status"] == "completed", job
    assert job["attempts"] == 2 and "requeued" in steps(job)
    assert len(agent_commits(stack, slow["branchName"])) == 1


def test_agent_killed_mid_job_restarts_and_the_job_completes_once(stack: LocalStack) -> None:
    agent = stack.agents[0]
    assert agent.proc is not None
    slow = delegate(stack, task("Survive a crash", "slow=2"))
    wait_for_step(stack, slow["jobId"], "generating")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)
    stack.start_agent(agent.index)
    job = wait_for_job(stack, slow["jobId"], timeout_s=60)
    assert job["status"] == "completed", job
    assert job["attempts"] == 2 and "requeued" in steps(job)
    assert len(agent_commits(stack, slow["branchName"])) == 1
    assert len(emulator_pids(agent.work_dir)) <= OPTIONS.pool_size  # the orphaned CLI was reaped


def test_an_idle_cli_that_dies_is_restarted_by_the_health_check(stack: LocalStack) -> None:
    agent = stack.agents[0]

    def workers() -> list[dict[str, Any]]:
        health = stack.agent_health(agent)
        assert health is not None
        return list(health["workers"])

    deadline = time.monotonic() + 30
    while any(w["busy"] for w in workers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    restarts_before = sum(w["restarts"] for w in workers())
    victim = emulator_pids(agent.work_dir)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = workers()
        if sum(w["restarts"] for w in now) > restarts_before and all(w["ready"] for w in now):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the dead CLI was not restarted: {workers()}")
    pids = emulator_pids(agent.work_dir)
    assert victim not in pids and len(pids) == OPTIONS.pool_size


def test_sigterm_hands_running_jobs_back_and_exits(stack: LocalStack) -> None:
    agent = stack.agents[0]
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0
    agent.env["AIPM_DRAIN_TIMEOUT_S"] = "0.5"
    stack.start_agent(agent.index)
    slow = delegate(stack, task("Drain me", "slow=3"))
    wait_for_step(stack, slow["jobId"], "generating")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0
    job = stack.api("GET", f"/api/jobs/{slow['jobId']}")[1]
    assert job["status"] == "queued"
    assert (
        job["timeline"][-1]["detail"]
        == "the agent is shutting down; handed back to the queue (no attempt used)"
    )
    stack.start_agent(agent.index)
    done = wait_for_job(stack, slow["jobId"], timeout_s=90)
    assert done["status"] == "completed" and len(agent_commits(stack, slow["branchName"])) == 1


def wait_for_steps(stack: LocalStack, job_id: str, step: str, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if steps(stack.api("GET", f"/api/jobs/{job_id}")[1]).count(step) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {step} {count} times")


def test_three_graceful_stops_during_one_job_use_no_attempt(stack: LocalStack) -> None:
    """A redeploy stops the agent with SIGTERM; more stops than the job has attempts (2 here) must not fail
    it: a graceful hand-back is not the job's failure."""
    agent = stack.agents[0]
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)  # restart it with a short drain, so a running job is handed back
    assert agent.proc.wait(timeout=30) == 0
    agent.env["AIPM_DRAIN_TIMEOUT_S"] = "0.5"
    stack.start_agent(agent.index)
    slow = delegate(stack, task("Survive three redeploys", "slow=4"))
    for stop in range(1, 4):
        wait_for_steps(stack, slow["jobId"], "generating", stop)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=30) == 0
        held = stack.api("GET", f"/api/jobs/{slow['jobId']}")[1]
        assert (held["status"], held["attempts"]) == ("queued", 0), held
        stack.start_agent(agent.index)
    job = wait_for_job(stack, slow["jobId"], timeout_s=90)
    assert job["status"] == "completed", job
    assert job["attempts"] == 1 and stack.store().get_job(slow["jobId"]).hand_backs == 3
    assert steps(job).count("claimed") == 4
    assert len(agent_commits(stack, slow["branchName"])) == 1


def test_a_push_the_repository_refuses_fails_at_once_with_its_reason(stack: LocalStack) -> None:
    """A pre-receive hook on the forge (as GitHub's rulesets answer) refuses the job's branch: the job fails
    on its first attempt, the CLI ran once, and the reason quotes the repository's message."""
    body = task("Refused by a rule")
    hook = stack.demo_repo / "hooks" / "pre-receive"
    prefix = "refs/heads/" + body["branchName"]  # the API appends -<ms> to the branch name
    message = f"error: GH013: Repository rule violations found for {prefix}"
    hook.write_text(
        "#!/bin/sh\n"
        "while read -r old new ref; do\n"
        f'  case "$ref" in {prefix}-*) echo "{message}" >&2; exit 1;; esac\n'
        "done\n"
    )
    hook.chmod(0o755)
    try:
        job = wait_for_job(stack, delegate(stack, body)["jobId"], timeout_s=60)
    finally:
        hook.unlink()
    assert job["status"] == "failed", job
    assert job["attempts"] == 1
    assert steps(job).count("generating") == 1 and "requeued" not in steps(job)
    assert job["reason"] == (
        f"push refused by the repository: {message}; [remote rejected] (pre-receive hook declined)"
    )
    assert agent_commits(stack, job["branchName"]) == []


def test_two_agents_on_one_queue_never_run_a_job_twice(tmp_path: Path) -> None:
    options = StackOptions(emulator_work_s=0.1, agents=2, sweep_interval_s=0.5, lease_s=10)
    with LocalStack(tmp_path, options) as pair:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda n: delegate(pair, task(f"Shared queue {n}")), range(12)))
            jobs = list(pool.map(lambda a: wait_for_job(pair, a["jobId"], timeout_s=120), answers))
        assert [j["status"] for j in jobs] == ["completed"] * 12
        assert all(steps(j).count("claimed") == 1 for j in jobs)
        assert all(len(agent_commits(pair, a["branchName"])) == 1 for a in answers)
        claimers = {
            next(e["detail"] for e in j["timeline"] if e["step"] == "claimed").split("/")[0] for j in jobs
        }
        assert claimers == {"by local-agent-1", "by local-agent-2"}
