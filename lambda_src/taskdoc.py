"""TASK.md, the PR body, and the issue or comment of the other targets: what the agent and reviewers read.

User text is data. Every field a person typed is shown inside a fenced code block (the title in an
inline code span), its wording kept line for line, so Markdown, raw HTML, @mentions, `#123` references
and closing keywords (`Fixes owner/repo#1`) in it have no effect on GitHub: GitHub renders, links and acts
on none of them inside code. The fence is longer than any run of backticks in the text, so no line of it
can close the block. Lines the product writes itself (headings, the provenance line, `Fixes #<n>` when a
job answers an issue) stand outside the blocks.
Bidirectional-text controls and line/paragraph separators never get here: the API refuses them (400).

The provenance line comes first and carries no personal data: the requester stays on the job record (and
TASK.md, which is committed to the repository's history, never names them).
Sources: GitHub Docs "Basic writing and formatting syntax" (code blocks), "Linking a pull request to an
issue" (closing keywords are read from the PR body and commit messages).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

TASK_FILE = "TASK.md"
_BACKTICK_RUN = re.compile(r"`+")
# What `as_data` writes as a visible escape: C0 but tab and line feed, DEL, C1, bidirectional-text controls,
# the line/paragraph separators, and the invisible characters the API refuses in a task (soft hyphen,
# Mongolian vowel separator, zero-width space, word joiner and invisible operators, BOM) plus the Unicode
# tag characters (U+E0000-E007F: invisible, yet read by models as ASCII). Text a person wrote on GitHub, or
# a diff, may hold any of them.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)


@dataclass(frozen=True)
class TaskText:
    """The user-written parts of a task, already validated (no control, bidi or separator characters)."""

    title: str
    objective: str
    constraints: str
    acceptance_criteria: Sequence[str]


def as_data(text: str) -> str:
    """`text` written on GitHub (a comment, an issue) made safe to quote: CR LF and CR become LF, every other
    control, bidirectional or separator character a visible `\\uXXXX` escape; tabs and line feeds stay."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def quoted(text: str) -> str:
    """`text` as a fenced code block (info string `text`), its lines unchanged."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}text\n{text}\n{fence}"


def quoted_inline(text: str) -> str:
    """One line of `text` as an inline code span (CommonMark: a backtick string longer than any run inside
    it; one space of padding, which renderers strip, so text may begin or end with a backtick)."""
    ticks = "`" * (_longest_backtick_run(text) + 1)
    return f"{ticks} {text} {ticks}"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)


def provenance_line(job_id: str | None) -> str:
    """The first line of every document the product writes for a task; no personal data."""
    job = f" · job `{job_id}`" if job_id else ""
    return (
        f"_AIPM delegated task{job}. The text in the code blocks below is the requester's, verbatim; "
        "it is data, not instructions to GitHub._"
    )


def _sections(task: TaskText, level: str) -> str:
    """The task under a heading of `level` ("#" or "##"), sections one level below. Criteria: one per line,
    each after a product-written `- [ ] ` (the agent ticks them off)."""
    criteria = "\n".join(f"- [ ] {criterion}" for criterion in task.acceptance_criteria)
    sub = level + "#"
    parts = [
        f"{level} {quoted_inline(task.title)}",
        f"{sub} Objective",
        quoted(task.objective),
        f"{sub} Constraints",
        quoted(task.constraints) if task.constraints else "None stated.",
        f"{sub} Acceptance criteria",
        quoted(criteria) if criteria else "None stated: the objective is met.",
    ]
    return "\n\n".join(parts)


def render_task_md(task: TaskText, *, job_id: str) -> str:
    """TASK.md: the provenance line, the task in quoted sections, what happens next."""
    return (
        f"{provenance_line(job_id)}\n\n{_sections(task, '#')}\n\n---\n"
        "A coding agent implements this task and pushes its changes to this branch.\n"
    )


def render_pr_body(task: TaskText, *, job_id: str, fixes: int | None = None) -> str:
    """The PR description. `fixes`: the issue number this PR answers (a product-written closing line)."""
    closing = f"\n\nFixes #{fixes}" if fixes is not None else ""
    return (
        f"{provenance_line(job_id)}\n\n{_sections(task, '##')}\n\n---\n"
        f"Code is being generated by the AIPM agent (job `{job_id}`); see `{TASK_FILE}`.{closing}"
    )


def render_issue_body(task: TaskText) -> str:
    """The body of the issue (`target: new-issue`) or comment (`targetNumber`): no job exists for these."""
    return f"{provenance_line(None)}\n\n{_sections(task, '##')}"


_COMMENT_KINDS = {
    "issue_comment": "a comment on the pull request",
    "pull_request_review_comment": "a review comment",
    "pull_request_review": "a review",
}


def describe_comment(event: str) -> str:
    """How the brief, the timeline and the reply name the comment (GitHub webhook event) a follow-up
    answers."""
    return _COMMENT_KINDS.get(event, "a comment")


@dataclass(frozen=True)
class ThreadComment:
    """One earlier comment of the conversation a follow-up answers: its author's login and its text, as
    GitHub gave them (untrusted; `render_follow_up_brief` quotes both as data)."""

    author: str
    body: str


@dataclass(frozen=True)
class BranchDiff:
    """The diff so far: the job branch against its base (from their merge base), as git printed it, cut
    at a size limit (`truncated`: the branch holds more than `text` shows). `text` is untrusted (any
    commit on the branch chose it); `note` says why there is no diff when it could not be made."""

    text: str
    truncated: bool = False
    note: str = ""


def render_follow_up_brief(
    task_md: str,
    *,
    job_id: str,
    author: str,
    comment: str,
    where: str,
    path: str | None = None,
    line: int | None = None,
    thread: Sequence[ThreadComment] = (),
    thread_note: str = "",
    diff: BranchDiff | None = None,
) -> str:
    """What the CLI reads as TASK.md in a follow-up job: the request (who, where, the file and line of a
    review comment, the comment quoted as data), the earlier conversation (`thread`, oldest first, each
    author and body quoted as data; `thread_note` says why it is missing or shortened), the branch's
    TASK.md unchanged, then the diff so far (`diff`, quoted as data, with a `… truncated` line when it was
    cut) — last, so a CLI whose read tool stops after some lines loses the diff's end, never the task.
    `where` is the product's description of the comment ("a review comment", "a comment on the pull
    request", "a review"); `task_md` is the branch's TASK.md, which the product wrote (its user text
    already quoted)."""
    location = ""
    if path:
        location = f"File: {quoted_inline(as_data(path))}" + (f", line {line}" if line else "") + "\n\n"
    return (
        f"_AIPM follow-up · job `{job_id}`. The text in the code blocks below is the reviewers' and the "
        "branch's, verbatim; it is data, not instructions to GitHub._\n\n"
        "# Follow-up request\n\n"
        "The task further below was implemented in earlier commits on this branch. A reviewer asked for a "
        "change in "
        f"{where} on its pull request. Make that change now, keeping the earlier work unless the request "
        "says otherwise; if it names a file and line, the change belongs there.\n\n"
        f"From: {quoted_inline(as_data(author))}\n\n"
        f"{location}"
        f"{quoted(as_data(comment))}\n\n"
        f"{_thread_section(thread, thread_note)}"
        "---\n\n"
        "# The original task\n\n"
        f"{task_md.rstrip(chr(10))}\n"
        f"{_diff_section(diff)}"
    )


def _thread_section(thread: Sequence[ThreadComment], note: str) -> str:
    parts = ["## The conversation so far\n"]
    if not thread:
        parts.append("No earlier comments.")
    for entry in thread:
        parts.append(f"From: {quoted_inline(as_data(entry.author))}\n\n{quoted(as_data(entry.body))}")
    if note:
        parts.append(f"_{note}_")
    return "\n\n".join(parts) + "\n\n"


def _diff_section(diff: BranchDiff | None) -> str:
    if diff is None:
        return ""
    head = (
        "\n---\n\n# The diff so far\n\nThe earlier commits of this branch against its base, as `git diff` "
        "prints it (TASK.md left out)."
    )
    if diff.note:
        return f"{head}\n\n_{diff.note}_\n"
    if not diff.text:
        return f"{head}\n\nNo changes yet.\n"
    cut = (
        "\n\n… truncated: the diff is longer than this; the files in the work tree hold the whole change."
        if diff.truncated
        else ""
    )
    text = as_data(diff.text)
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{head}\n\n{fence}diff\n{text.rstrip(chr(10))}\n{fence}{cut}\n"
