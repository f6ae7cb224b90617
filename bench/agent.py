"""Agent benchmarks on the local stack: dispatch latency, overhead, throughput, scale-out, memory.

Every figure is measured in this run on this machine; the targets are ratios or bounds from issue 3:
- dispatch: API response → the agent sending the prompt to the CLI (the `generating` timeline entry, written
  just before the prompt is sent), idle warm pool, one job at a time; the cold first job on its own.
  Baseline: the prototype polls every 5 s.
- overhead: job wall time (created → completed) minus the emulator's own working time, one job at a time.
- throughput: N jobs of 1 s emulator work on 2 slots, submitted together; efficiency = ideal / actual, where
  ideal = N x 1 s / 2 slots. `refused` counts requests not answered 201.
- scale-out: 3 agents x 2 slots on one table; efficiency as above; `scaleout_<profile>_double_runs` counts
  jobs claimed more than once or whose branch holds more than one agent commit.
The throughput and scale-out keys name the CLI profile they run (`throughput_emulator_efficiency`,
`scaleout_emulator_efficiency`, …): the emulator's fixed working time is what makes "ideal" exact.
- agent_rss_mb: resident memory of the agent process (CLI children excluded) after the throughput run.
- the driver's share, which bounds the efficiencies above: the emulator in a terminal session of its own
  (no stack, no sandbox), with no working time, `DRIVER_JOBS` tasks with a reset after each:
  `emulator_turn_overhead_ms` (a task's wall time: typing, Enter, the turn's end judged on the screen),
  `emulator_reset_ms` (`/clear`, its question answered, the acknowledgement), medians; and
  `throughput_emulator_driver_bound` = work / (work + turn overhead + reset) for the 1 s jobs above: what a
  slot could reach if the rest of the pipeline (claim, checkout, commit, records) cost nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions, wait_for_job
from ec2_agent.profiles import builtin_profile
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import open_session

LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "40"))
THROUGHPUT_JOBS = int(os.environ.get("BENCH_THROUGHPUT_JOBS", "100"))
SCALEOUT_JOBS = int(os.environ.get("BENCH_SCALEOUT_JOBS", "300"))
LATENCY_WORK_S = 0.3
JOB_WORK_S = 1.0
SUBMITTERS = 8
PROFILE = "emulator"  # the CLI profile of the throughput and scale-out runs, named in their keys
DRIVER_JOBS = int(os.environ.get("BENCH_DRIVER_JOBS", "20"))


def task(n: int, prefix: str) -> dict[str, Any]:
    return {
        "owner": DEMO_OWNER,
        "repo": DEMO_REPO,
        "branchName": f"bench/{prefix}-{n}",
        "taskTitle": f"Bench {prefix} {n}",
        "objective": "Measure the pipeline",
        "prTitle": f"bench: {prefix} {n}",
        "acceptanceCriteria": ["It is measured"],
    }


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def step_at(job: dict[str, Any], step: str) -> float:
    return epoch_s(next(e["at"] for e in job["timeline"] if e["step"] == step))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def latency(root: Path) -> dict[str, float]:
    """One job at a time on an idle, warm pool: one job per slot first pays the cold costs (the first
    clone of the repository, the session moving into it, the first dispatcher invocation); that first
    job's dispatch latency is reported on its own as dispatch_cold_ms."""
    dispatch_ms: list[float] = []
    overhead_ms: list[float] = []
    with LocalStack(root, StackOptions(emulator_work_s=LATENCY_WORK_S)) as stack:
        warm_up = [one_job(stack, f"warm-{slot}") for slot in range(stack.options.pool_size)]
        for n in range(LATENCY_SAMPLES):
            dispatch, overhead = one_job(stack, f"latency-{n}")
            dispatch_ms.append(dispatch)
            overhead_ms.append(overhead)
    return {
        "dispatch_cold_ms": round(warm_up[0][0], 1),
        "dispatch_p50_ms": round(statistics.median(dispatch_ms), 1),
        "dispatch_p99_ms": round(percentile(dispatch_ms, 99), 1),
        "dispatch_baseline_poll_ms": 5000.0,
        "overhead_p50_ms": round(statistics.median(overhead_ms), 1),
    }


def one_job(stack: LocalStack, name: str) -> tuple[float, float]:
    """Submit one task and follow it; returns (dispatch ms, overhead ms)."""
    status, answer = stack.api("POST", "/api/personal-delegate", task(0, name))
    answered = time.time()
    assert status == 201, answer
    job = wait_for_job(stack, answer["jobId"], interval_s=0.02)
    assert job["status"] == "completed", job
    wall = step_at(job, "completed") - step_at(job, "queued")
    return (step_at(job, "generating") - answered) * 1000, (wall - LATENCY_WORK_S) * 1000


def submit_all(stack: LocalStack, count: int, prefix: str) -> tuple[float, list[str], int]:
    """Submit `count` tasks from SUBMITTERS threads; returns (start time, job ids, refused count)."""
    started = time.time()
    with ThreadPoolExecutor(SUBMITTERS) as pool:
        answers = list(
            pool.map(lambda n: stack.api("POST", "/api/personal-delegate", task(n, prefix)), range(count))
        )
    refused = sum(1 for status, _ in answers if status != 201)
    return started, [a["jobId"] for status, a in answers if status == 201], refused


def collect(stack: LocalStack, job_ids: list[str]) -> list[dict[str, Any]]:
    """Follow the jobs one after another (finish times come from their timelines, so following them
    sequentially loads the stack least and changes no figure)."""
    return [wait_for_job(stack, j, timeout_s=1800, interval_s=1.0) for j in job_ids]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def throughput(root: Path) -> dict[str, float | int]:
    options = StackOptions(cli_profile=PROFILE, emulator_work_s=JOB_WORK_S, sweep_interval_s=1)
    with LocalStack(root, options) as stack:
        started, job_ids, refused = submit_all(stack, THROUGHPUT_JOBS, "throughput")
        jobs = collect(stack, job_ids)
        finished = max(step_at(j, "completed") for j in jobs if j["status"] == "completed")
        completed = sum(1 for j in jobs if j["status"] == "completed")
        assert stack.agents[0].proc is not None
        memory = rss_mb(stack.agents[0].proc.pid)
    ideal = completed * JOB_WORK_S / 2
    key = f"throughput_{PROFILE}"
    return {
        f"{key}_jobs": THROUGHPUT_JOBS,
        f"{key}_completed": completed,
        f"{key}_efficiency": round(ideal / (finished - started), 3),
        f"{key}_refused": refused,
        "agent_rss_mb": round(memory, 1),
    }


def scaleout(root: Path) -> dict[str, float | int]:
    options = StackOptions(cli_profile=PROFILE, emulator_work_s=JOB_WORK_S, agents=3, sweep_interval_s=1)
    with LocalStack(root, options) as stack:
        started, job_ids, refused = submit_all(stack, SCALEOUT_JOBS, "scaleout")
        jobs = collect(stack, job_ids)
        completed = [j for j in jobs if j["status"] == "completed"]
        finished = max(step_at(j, "completed") for j in completed)
        double = 0
        for job in jobs:
            claims = sum(1 for e in job["timeline"] if e["step"] == "claimed")
            agent_commits = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(stack.demo_repo),
                    "rev-list",
                    "--count",
                    f"main..{job['branchName']}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if claims > 1 or int(agent_commits) > 2:
                double += 1
    ideal = len(completed) * JOB_WORK_S / 6
    key = f"scaleout_{PROFILE}"
    return {
        f"{key}_jobs": SCALEOUT_JOBS,
        f"{key}_completed": len(completed),
        f"{key}_efficiency": round(ideal / (finished - started), 3),
        f"{key}_double_runs": double,
        f"{key}_refused": refused,
    }


def driver(root: Path) -> dict[str, float]:
    """The emulator's terminal round trips per job, measured on a bare session (see the module docstring)."""
    workdir = root / "tree"
    workdir.mkdir(parents=True)
    (workdir / "TASK.md").write_text("# Bench\n\n## Objective\n\nMeasure the driver.\n")
    os.environ["KIRO_EMULATOR_WORK_S"] = "0"
    try:
        session = open_session(builtin_profile(PROFILE), workdir)
        session.start()
        turns, resets = [], []
        try:
            for _ in range(DRIVER_JOBS):
                started = time.monotonic()
                outcome = session.run_task(task_prompt(), timeout_s=30)
                turns.append(time.monotonic() - started)
                assert outcome.kind == "completed", outcome
                started = time.monotonic()
                session.reset()
                resets.append(time.monotonic() - started)
        finally:
            session.close()
    finally:
        del os.environ["KIRO_EMULATOR_WORK_S"]
    turn_s, reset_s = statistics.median(turns), statistics.median(resets)
    return {
        "emulator_turn_overhead_ms": round(turn_s * 1000, 1),
        "emulator_reset_ms": round(reset_s * 1000, 1),
        "throughput_emulator_driver_bound": round(JOB_WORK_S / (JOB_WORK_S + turn_s + reset_s), 3),
    }


def run() -> dict[str, float | int]:
    results: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory(prefix="aipm-bench-") as tmp:
        for name, suite in (
            ("latency", latency),
            ("throughput", throughput),
            ("scaleout", scaleout),
            ("driver", driver),
        ):
            results.update(suite(Path(tmp) / name))
    return results
