"""Follow-up jobs on the agent: the brief the CLI reads, and the reply on the comment that asked.

A follow-up job (`Job.follow_up`, queued by lambda_src.webhook_intake from a PR comment) runs like any job
on the PR's branch, with one difference: while the CLI works, the work tree's TASK.md is the generated
brief (the request — who asked, the comment quoted as data, a review comment's file and line —, the
conversation so far, the branch's TASK.md, then the diff so far), so the constant task prompt still points
a CLI that cannot resume the PR's earlier session at everything it needs.

The conversation: for a review comment, its thread (the first comment and its replies); otherwise the PR's
comments; the triggering comment left out, at most THREAD_MAX_COMMENTS of the latest, each body cut at
COMMENT_MAX_CHARS, read through the agent's one GitHub client. The diff: the branch against its base from
their merge base, at most DIFF_MAX_BYTES (ec2_agent.workspace.Workspace.branch_diff). Both are untrusted
text, quoted as data with control and invisible characters shown as escapes (lambda_src.taskdoc.as_data).
If either cannot be read, the brief says so and the job goes on (the comment is the instruction). Before the
commit the branch's TASK.md is put back byte for byte, so the brief never reaches the branch and a CLI that
changed nothing else ends `no_changes`. The tree is the CLI's: TASK.md is replaced by unlinking whatever is
there (a link, a directory) and creating a new file without following links.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import GitHubError
from lambda_src.records.models import FollowUp, Job, JobStatus
from lambda_src.taskdoc import (
    TASK_FILE,
    BranchDiff,
    ThreadComment,
    describe_comment,
    quoted_inline,
    render_follow_up_brief,
)

log = logging.getLogger(__name__)

DIFF_MAX_BYTES = 60_000
THREAD_MAX_COMMENTS = 20
COMMENT_MAX_CHARS = 2_000


@dataclass(frozen=True)
class Conversation:
    """The earlier comments a follow-up's brief shows (oldest first), and a note when some are missing."""

    comments: list[ThreadComment]
    note: str = ""


def read_conversation(github: GitHubClient, job: Job) -> Conversation:
    """The conversation before `job`'s comment: a review comment's thread, or the PR's comments (see the
    module docstring for the bounds). Never raises: a GitHub failure is the note."""
    follow_up = job.follow_up
    assert follow_up is not None
    try:
        if follow_up.event == "pull_request_review_comment":
            listing = _review_thread(
                github.review_comments(job.owner, job.repo_name, job.pr_number), follow_up
            )
        else:
            listing = github.issue_comments(job.owner, job.repo_name, job.pr_number, per_page=100)
    except GitHubError as err:
        log.warning("could not read the conversation", extra={"job_id": job.job_id, "error": str(err)})
        return Conversation([], f"The conversation could not be read from GitHub: {err}")
    earlier = [c for c in listing if c.get("id") != follow_up.comment_id]
    left_out = max(0, len(earlier) - THREAD_MAX_COMMENTS)
    comments = [_thread_comment(c) for c in earlier[left_out:]]
    note = f"{left_out} earlier comment(s) left out." if left_out else ""
    if any(len(str(c.get("body") or "")) > COMMENT_MAX_CHARS for c in earlier[left_out:]):
        note = f"{note} Comments longer than {COMMENT_MAX_CHARS} characters are cut.".strip()
    return Conversation(comments, note)


def _review_thread(listing: list[dict[str, Any]], follow_up: FollowUp) -> list[dict[str, Any]]:
    """The thread of review comment `follow_up.comment_id`: its first comment and the replies to it."""
    found = next((c for c in listing if c.get("id") == follow_up.comment_id), None)
    root = (found.get("in_reply_to_id") or found.get("id")) if found else follow_up.comment_id
    return [c for c in listing if root in (c.get("id"), c.get("in_reply_to_id"))]


def _thread_comment(comment: dict[str, Any]) -> ThreadComment:
    user = comment.get("user")
    author = str(user.get("login") or "unknown") if isinstance(user, dict) else "unknown"
    body = str(comment.get("body") or "")
    if len(body) > COMMENT_MAX_CHARS:
        body = body[:COMMENT_MAX_CHARS] + "\n… truncated"
    return ThreadComment(author=author, body=body)


def show_brief(
    tree: Path, job: Job, *, conversation: Conversation | None = None, diff: BranchDiff | None = None
) -> bytes | None:
    """For a follow-up job, replace `tree`/TASK.md by the brief (with `conversation` and `diff`, the
    branch's diff so far) and return the branch's TASK.md bytes (to give to `put_back`); None for any
    other job. The caller has checked TASK.md is a regular file. Raises OSError."""
    follow_up = job.follow_up
    if follow_up is None:
        return None
    path = tree / TASK_FILE
    original = path.read_bytes()
    brief = render_follow_up_brief(
        original.decode("utf-8", "replace"),
        job_id=job.job_id,
        author=follow_up.author,
        comment=follow_up.body,
        where=describe_comment(follow_up.event),
        path=follow_up.path,
        line=follow_up.line,
        thread=conversation.comments if conversation else (),
        thread_note=conversation.note if conversation else "",
        diff=diff,
    )
    write_task_md(tree, brief.encode("utf-8"))
    return original


def put_back(tree: Path, original: bytes) -> None:
    """Make `tree`/TASK.md the branch's bytes again, whatever the CLI left there. Raises OSError."""
    write_task_md(tree, original)


def write_task_md(tree: Path, data: bytes) -> None:
    """Replace `tree`/TASK.md with `data`: whatever is there (a link, a directory) is removed first and the
    file is created without following links. Raises OSError."""
    path = tree / TASK_FILE
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def commit_message(job: Job, title: str) -> str:
    """The follow-up commit's message: what it answers (the comment's URL) and the job."""
    follow_up = job.follow_up
    assert follow_up is not None
    where = f" ({follow_up.path})" if follow_up.path else ""
    return (
        f"fix: {title}: follow-up{where}\n\n"
        f"Answers {follow_up.comment_url or 'a comment on the pull request'}.\n"
        f"Generated by the AIPM agent (job {job.job_id}, follow-up of job {follow_up.parent_job_id})."
    )


def reply_body(job: Job, status: JobStatus, *, commit_sha: str | None, detail: str, duration_s: float) -> str:
    """The reply on the comment that asked: the outcome and the commit. It never quotes the comment (so it
    never mentions the handle, and never starts another job)."""
    follow_up = job.follow_up
    assert follow_up is not None
    link = f" ([the request]({follow_up.comment_url}))" if follow_up.comment_url else ""
    if status is JobStatus.COMPLETED:
        return (
            f"✅ AIPM agent pushed {commit_sha} to this branch in {duration_s:.1f} s{link}. "
            f"Job `{job.job_id}`.\n\n{detail}"
        )
    return (
        f"⚠️ AIPM agent: the follow-up ended as **{status.value}** after {duration_s:.1f} s{link}: "
        f"{quoted_inline(detail)} Job `{job.job_id}`."
    )
