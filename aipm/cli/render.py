"""Plain-text views of jobs, timelines and workers (the `--json` output is the API's JSON as-is)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from lambda_src.records.models import TERMINAL_STATUSES, JobStatus

SUCCESS = JobStatus.COMPLETED.value
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
TAIL_LINES = 15


def print_json(out: TextIO, value: object) -> None:
    json.dump(value, out, indent=2, sort_keys=True)
    out.write("\n")


def parse_time(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def step_line(entry: Mapping[str, Any], started: str | None) -> str:
    """`  12:00:01.123Z  +1.3s  generating   detail` for one timeline entry."""
    at = str(entry.get("at", ""))
    clock = at.partition("T")[2] or at
    offset = ""
    start, now = parse_time(started or ""), parse_time(at)
    if start is not None and now is not None:
        offset = f"+{(now - start).total_seconds():.1f}s"
    detail = str(entry.get("detail") or "")
    return f"  {clock:<13} {offset:>8}  {entry.get('step', '?'):<11} {detail}".rstrip()


def timeline(job: Mapping[str, Any]) -> list[str]:
    entries: Sequence[Mapping[str, Any]] = job.get("timeline") or []
    started = entries[0].get("at") if entries else None
    return [step_line(e, started) for e in entries]


def duration_s(job: Mapping[str, Any]) -> float | None:
    start, end = parse_time(str(job.get("createdAt", ""))), parse_time(str(job.get("updatedAt", "")))
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def outcome(job: Mapping[str, Any]) -> list[str]:
    """What a person needs after a job ends: status and reason, the PR, the commit, what went wrong."""
    status = job.get("status")
    took = duration_s(job)
    head = f"job {job.get('jobId')}: {status}"
    if took is not None:
        head += f" after {took:.1f} s"
    if job.get("reason"):
        head += f" — {job['reason']}"
    lines = [head, f"PR:     {job.get('prUrl')}"]
    if job.get("commitSha"):
        lines.append(f"commit: {job['commitSha']}")
    if job.get("changedFiles"):
        lines.append("files:  " + ", ".join(job["changedFiles"]))
    if status != SUCCESS:
        if job.get("error"):
            lines.append(f"error:  {job['error']}")
        tail = (job.get("outputTail") or "").rstrip().splitlines()[-TAIL_LINES:]
        if tail:
            lines.append("the agent's last output:")
            lines.extend(f"  | {line}" for line in tail)
        lines.append(f"retry with: aipm jobs retry {job.get('jobId')}")
    return lines


def job_details(job: Mapping[str, Any]) -> list[str]:
    rows = [
        ("job", job.get("jobId")),
        ("status", job.get("status")),
        ("reason", job.get("reason")),
        ("title", job.get("taskTitle")),
        ("repo", job.get("repo")),
        ("branch", f"{job.get('branchName')} (base {job.get('baseBranch')})"),
        ("PR", f"#{job.get('prNumber')} {job.get('prUrl')}"),
        ("attempts", f"{job.get('attempts')} of {job.get('maxAttempts')}"),
        ("worker", job.get("worker")),
        ("commit", job.get("commitSha")),
        ("files", ", ".join(job.get("changedFiles") or []) or None),
        ("error", job.get("error")),
        ("by", job.get("requestedBy")),
        ("created", job.get("createdAt")),
        ("updated", job.get("updatedAt")),
    ]
    lines = [f"{name + ':':<10} {value}" for name, value in rows if value not in (None, "")]
    lines.append("timeline:")
    lines.extend(timeline(job))
    return lines


def jobs_table(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    rows = [("JOB", "STATUS", "REPO", "PR", "UPDATED", "TITLE")]
    for job in jobs:
        rows.append(
            (
                str(job.get("jobId", "")),
                str(job.get("status", "")),
                str(job.get("repo", "")),
                f"#{job.get('prNumber', '')}",
                str(job.get("updatedAt", ""))[:19].replace("T", " "),
                str(job.get("taskTitle", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]


def workers(pool: Mapping[str, Any]) -> list[str]:
    lines = []
    for agent in pool.get("agents") or []:
        state = "healthy" if agent.get("healthy") else "UNHEALTHY"
        if agent.get("draining"):
            state += ", draining"
        age = agent.get("ageS")
        seen = f"seen {age:.0f} s ago" if isinstance(age, int | float) else f"seen {agent.get('lastSeen')}"
        lines.append(f"agent {agent.get('agentId')}  {state}  version {agent.get('version')}  {seen}")
        for slot in agent.get("slots") or []:
            if slot.get("busy"):
                what = f"busy   job {slot.get('currentJob')}"
            elif slot.get("ready"):
                what = f"idle   {slot.get('idleS', 0):.0f} s"
            else:
                what = "NOT READY"
            lines.append(f"  slot {slot.get('id')}  {what}  restarts {slot.get('restarts', 0)}")
    agents = len(pool.get("agents") or [])
    lines.append(
        f"{pool.get('healthyAgents', 0)} of {agents} agent(s) healthy; "
        f"{pool.get('busySlots', 0)} of {pool.get('totalSlots', 0)} slot(s) busy"
    )
    return lines
