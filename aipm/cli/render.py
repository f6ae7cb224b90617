"""Views of jobs, timelines and workers: tables for people (colour on a terminal, relative times), and the
API's JSON as-is for `-o json` / `-o yaml`, optionally cut down to `--fields`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from lambda_src.records.models import TERMINAL_STATUSES, JobStatus

SUCCESS = JobStatus.COMPLETED.value
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
TAIL_LINES = 15


def print_json(out: TextIO, value: object) -> None:
    json.dump(value, out, indent=2, sort_keys=True)
    out.write("\n")


def print_yaml(out: TextIO, value: object) -> None:
    import yaml

    yaml.safe_dump(value, out, sort_keys=True, allow_unicode=True, default_flow_style=False)


def select_fields(value: object, fields: Sequence[str]) -> object:
    """`value` cut down to `fields` (top-level keys; for `{"jobs": [...]}`-like pages, the keys of each item).

    Raises KeyError naming a field no object has."""
    if not fields:
        return value

    def pick(item: Mapping[str, Any]) -> dict[str, Any]:
        return {f: item.get(f) for f in fields}

    if isinstance(value, Mapping):
        lists = [
            k for k, v in value.items() if isinstance(v, list) and all(isinstance(i, Mapping) for i in v)
        ]
        if lists and not any(f in value for f in fields):
            key = lists[0]
            items = value[key]
            known = {k for item in items for k in item}
            unknown = [f for f in fields if items and f not in known]
            if unknown:
                raise KeyError(", ".join(unknown))
            return {**{k: v for k, v in value.items() if k != key}, key: [pick(i) for i in items]}
        unknown = [f for f in fields if f not in value]
        if unknown:
            raise KeyError(", ".join(unknown))
        return pick(value)
    return value


def fields_table(value: object, fields: Sequence[str]) -> list[str]:
    """`--fields` in table form: one row per item of a page (or one row for one object)."""
    items: list[Mapping[str, Any]] = []
    if isinstance(value, Mapping):
        lists = [v for v in value.values() if isinstance(v, list)]
        items = lists[0] if lists and not any(f in value for f in fields) else [value]
    rows = [[f.upper() for f in fields]] + [
        ["" if i.get(f) is None else str(i.get(f)) for f in fields] for i in items
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(fields))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


# -- colour and time for people --------------------------------------------------------------------------

STATUS_COLOURS = {
    "completed": "32",  # green
    "failed": "31",  # red
    "timed_out": "31",
    "cancelled": "33",  # yellow
    "no_changes": "33",
    "checks_failed": "31",
}


def use_colour(stream: TextIO, *, disabled: bool = False) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    if disabled or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def paint(text: str, status: str, colour: bool) -> str:
    code = STATUS_COLOURS.get(status, "36")  # cyan: still running
    return f"\033[{code}m{text}\033[0m" if colour else text


def relative(stamp: str | None, now: datetime | None = None) -> str:
    """`5 s ago`, `3 min ago`, `2 h ago`, `4 d ago` for an ISO 8601 time; '' if unreadable."""
    when = parse_time(stamp or "")
    if when is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def short_ids(ids: Sequence[str], minimum: int = 8) -> dict[str, str]:
    """The shortest prefix (at least `minimum` characters) that tells each id apart from the others."""
    out: dict[str, str] = {}
    for job_id in ids:
        size = minimum
        while size < len(job_id) and any(o != job_id and o.startswith(job_id[:size]) for o in ids):
            size += 1
        out[job_id] = job_id[:size]
    return out


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
        ("follow-up", _follow_up(job.get("followUp"))),
        ("fixes", f"issue #{job['fixesIssue']}" if job.get("fixesIssue") else None),
        ("created", _with_relative(job.get("createdAt"))),
        ("updated", _with_relative(job.get("updatedAt"))),
    ]
    lines = [f"{name + ':':<10} {value}" for name, value in rows if value not in (None, "")]
    follow_ups = job.get("followUps")
    if follow_ups:
        lines.append("follow-ups:")
        lines.extend(_follow_up_row(f) for f in follow_ups if isinstance(f, Mapping))
    lines.append("timeline:")
    lines.extend(timeline(job))
    return lines


def _follow_up_row(follow_up: Mapping[str, Any]) -> str:
    """`  <job id>  <status>  <author>'s <kind>[ on <path>:<line>][  <commit>]` for one of a PR's
    follow-up jobs (GET /api/jobs/{id} `followUps`)."""
    where = f" on {follow_up.get('path')}:{follow_up.get('line')}" if follow_up.get("path") else ""
    kind = str(follow_up.get("event", "comment")).replace("_", " ")
    commit = f"  {str(follow_up['commitSha'])[:12]}" if follow_up.get("commitSha") else ""
    return (
        f"  {follow_up.get('jobId')}  {follow_up.get('status')}  "
        f"{follow_up.get('author')}'s {kind}{where}{commit}"
    )


def _follow_up(follow_up: object) -> str | None:
    """`of job <parent>: <author>'s comment [on <path>:<line>] <url>` for a job answering a PR comment."""
    if not isinstance(follow_up, Mapping):
        return None
    where = f" on {follow_up.get('path')}:{follow_up.get('line')}" if follow_up.get("path") else ""
    kind = str(follow_up.get("event", "comment")).replace("_", " ")
    url = follow_up.get("commentUrl") or ""
    return f"of job {follow_up.get('parentJobId')}: {follow_up.get('author')}'s {kind}{where} {url}".rstrip()


def _with_relative(stamp: str | None) -> str | None:
    if not stamp:
        return None
    ago = relative(stamp)
    return f"{stamp} ({ago})" if ago else stamp


def jobs_table(jobs: Sequence[Mapping[str, Any]], *, colour: bool = False) -> list[str]:
    """One row per job: a unique id prefix (any unique prefix works as a job id), status, repo, PR,
    when it last changed (relative) and the title."""
    ids = short_ids([str(job.get("jobId", "")) for job in jobs])
    rows = [("JOB", "STATUS", "REPO", "PR", "UPDATED", "TITLE")]
    statuses = [""]
    for job in jobs:
        status = str(job.get("status", ""))
        statuses.append(status)
        rows.append(
            (
                ids[str(job.get("jobId", ""))],
                status,
                str(job.get("repo", "")),
                f"#{job.get('prNumber', '')}",
                relative(job.get("updatedAt")),
                str(job.get("taskTitle", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row, status in zip(rows, statuses, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        if status:
            cells[1] = paint(cells[1], status, colour)
        lines.append("  ".join(cells) + "  " + row[-1])
    return lines


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
            if "crashes" in slot:  # planned resets are told apart from crashes
                counts = f"crashes {slot.get('crashes', 0)}, resets {slot.get('resets', 0)}"
            else:
                counts = f"restarts {slot.get('restarts', 0)}"
            lines.append(f"  slot {slot.get('id')}  {what}  {counts}")
    agents = len(pool.get("agents") or [])
    lines.append(
        f"{pool.get('healthyAgents', 0)} of {agents} agent(s) healthy; "
        f"{pool.get('busySlots', 0)} of {pool.get('totalSlots', 0)} slot(s) busy"
    )
    return lines
