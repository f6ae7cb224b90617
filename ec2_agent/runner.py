"""Runs one claimed job on one slot: checkout, CLI task, commit, push, PR comment — each step recorded."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ec2_agent.prompting import strip_control, task_prompt
from ec2_agent.session import CliSession, SessionError, TaskOutcome
from ec2_agent.workspace import Commit, GitError, PushRejected, UnsafeReference, Workspace
from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import GitHubError
from lambda_src.records.models import Job, JobStatus
from lambda_src.records.store import JobStore, LeaseLost, RecordError

log = logging.getLogger(__name__)


@dataclass
class SlotState:
    """What one slot owns: its workspace and its CLI session. Only its own thread touches the session."""

    id: int
    workspace: Workspace
    session_factory: Callable[[Path, Callable[[str], None]], CliSession]
    session: CliSession | None = None
    output_listener: Callable[[str], None] | None = None
    session_dir: Path | None = None
    current_job: str | None = None
    idle_since: float = field(default_factory=time.monotonic)
    restarts: int = 0
    ready: bool = False
    clean: bool = True
    cancel: threading.Event = field(default_factory=threading.Event)

    def ensure_session(self, tree: Path) -> CliSession:
        """A live session in `tree`, reset so nothing leaks from the previous job. Raises SessionError."""
        if self.session is not None and self.session.alive and self.session_dir == tree:
            if not self.clean:
                self.session.reset()
                self.clean = True
            return self.session
        if self.session is not None:
            self.session.close()
            self.restarts += 1
        self.ready = False
        self.session = self.session_factory(tree, self.emit)
        self.session_dir = tree
        self.session.start()
        self.ready = True
        self.clean = True
        return self.session

    def tidy(self) -> None:
        """Reset the conversation as soon as a job ends, so the next job starts without waiting for it.
        A session that does not come back from the reset is dropped (the pool's healing restarts it)."""
        if self.session is None or self.clean:
            return
        if not self.session.alive:
            self.drop_session()
            return
        try:
            self.session.reset()
            self.clean = True
        except SessionError:
            log.warning("CLI session did not come back from its reset; restarting it")
            self.drop_session()

    def emit(self, chunk: str) -> None:
        """Forward the session's output to whoever listens for the current job."""
        if self.output_listener is not None:
            self.output_listener(chunk)

    def drop_session(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None
        self.session_dir = None
        self.ready = False


@dataclass(frozen=True)
class RunnerConfig:
    worker_prefix: str
    lease_s: float
    job_timeout_s: float


class LeaseKeeper:
    """Renews a job's lease every lease_s/3 while it runs, storing the output tail.

    If the lease is lost (the job was cancelled or reclaimed) it sets `cancel`, which interrupts the CLI.
    """

    def __init__(
        self, store: JobStore, job_id: str, worker: str, lease_s: float, cancel: threading.Event
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._worker = worker
        self._lease_s = lease_s
        self._cancel = cancel
        self._stop = threading.Event()
        self.lost = False
        self.tail = ""
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                self._store.renew(self._job_id, self._worker, self._lease_s, output_tail=self.tail or None)
            except LeaseLost:
                log.warning("lease lost; interrupting the CLI", extra={"job_id": self._job_id})
                self.lost = True
                self._cancel.set()
                return
            except Exception:
                log.exception("lease renewal failed; retrying", extra={"job_id": self._job_id})


class JobRunner:
    """Takes a claimed job through its steps. Every exit path leaves the job terminal, queued, or lost."""

    def __init__(self, store: JobStore, github: GitHubClient, config: RunnerConfig) -> None:
        self._store = store
        self._github = github
        self._config = config

    def worker_id(self, slot: SlotState) -> str:
        return f"{self._config.worker_prefix}/slot-{slot.id}"

    def run(self, slot: SlotState, job: Job) -> JobStatus | None:
        """Run `job` (already claimed by this slot). Returns the status it ended in, or None if lost."""
        worker = self.worker_id(slot)
        started = time.monotonic()
        slot.cancel.clear()
        keeper = LeaseKeeper(self._store, job.job_id, worker, self._config.lease_s, slot.cancel)
        try:
            with keeper:
                status = self._steps(slot, job, worker, keeper)
        except LeaseLost:
            status = None
        if status is None:
            status = self._after_lost_lease(job)
        if status is not None and status.terminal:
            self._comment(job, status, time.monotonic() - started)
        return status

    def _steps(self, slot: SlotState, job: Job, worker: str, keeper: LeaseKeeper) -> JobStatus | None:
        store = self._store
        store.advance(
            job.job_id, worker, JobStatus.PREPARING, f"checking out {job.branch_name} on slot {slot.id}"
        )
        try:
            tree = slot.workspace.prepare(job.owner, job.repo_name, job.branch_name)
        except UnsafeReference as err:
            return self._finish(job, worker, JobStatus.FAILED, f"refused: {err}")
        except GitError as err:
            return self._release(job, worker, f"checkout failed: {err}")
        if not (tree / "TASK.md").is_file():
            return self._finish(job, worker, JobStatus.FAILED, "TASK.md is missing from the branch")
        try:
            session = slot.ensure_session(tree)
        except SessionError as err:
            slot.drop_session()
            return self._release(job, worker, f"the CLI session could not start: {err}")

        def on_output(chunk: str) -> None:
            keeper.tail = (keeper.tail + chunk)[-8192:]

        slot.output_listener = on_output
        store.advance(job.job_id, worker, JobStatus.GENERATING, f"prompt sent to the CLI on slot {slot.id}")
        slot.clean = False
        outcome = session.run_task(task_prompt(), timeout_s=self._config.job_timeout_s, cancel=slot.cancel)
        log.info("CLI finished", extra={"outcome": outcome.kind, "duration_s": round(outcome.duration_s, 3)})
        return self._after_cli(slot, job, worker, tree, outcome, keeper)

    def _after_cli(
        self, slot: SlotState, job: Job, worker: str, tree: Path, outcome: TaskOutcome, keeper: LeaseKeeper
    ) -> JobStatus | None:
        tail = outcome.output_tail
        if outcome.kind == "cancelled":
            if not slot.session or not slot.session.alive:
                slot.drop_session()
            if keeper.lost:
                return None
            return self._release(job, worker, "the agent is shutting down; handed back to the queue")
        if outcome.kind == "timed_out":
            slot.drop_session()
            reason = f"the CLI did not finish within {self._config.job_timeout_s:g} s; it was interrupted"
            return self._finish(job, worker, JobStatus.TIMED_OUT, reason, output_tail=tail)
        if outcome.kind == "crashed":
            slot.drop_session()
            return self._release(
                job, worker, f"the CLI exited unexpectedly (status {outcome.exit_status})", tail
            )
        self._store.advance(job.job_id, worker, JobStatus.COMMITTING, "committing the CLI's changes")
        title = strip_control(job.task_title).replace("\n", " ")
        try:
            commit = slot.workspace.commit_all(
                tree, f"feat: {title}\n\nGenerated by the AIPM agent (job {job.job_id})."
            )
        except GitError as err:
            return self._finish(job, worker, JobStatus.FAILED, f"commit failed: {err}", output_tail=tail)
        if commit is None:
            reason = "the CLI finished without changing any file"
            return self._finish(job, worker, JobStatus.NO_CHANGES, reason, output_tail=tail)
        return self._push(slot, job, worker, tree, commit, tail)

    def _push(
        self, slot: SlotState, job: Job, worker: str, tree: Path, commit: Commit, tail: str
    ) -> JobStatus:
        # A job cancelled while the CLI worked must not reach the PR: confirm the lease right before pushing.
        self._store.renew(job.job_id, worker, self._config.lease_s, output_tail=tail or None)
        try:
            sha = slot.workspace.push(tree, job.branch_name, commit.sha)
        except PushRejected as err:
            return self._finish(job, worker, JobStatus.FAILED, f"push rejected: {err}", output_tail=tail)
        except GitError as err:
            return self._release(job, worker, f"push failed: {err}", tail)
        self._store.advance(
            job.job_id, worker, JobStatus.PUSHED, f"pushed {sha[:12]} to {job.branch_name}", commit_sha=sha
        )
        files = ", ".join(commit.changed_files[:20])
        return self._finish(
            job,
            worker,
            JobStatus.COMPLETED,
            f"{len(commit.changed_files)} file(s) changed: {files}",
            commit_sha=sha,
            changed_files=commit.changed_files,
            output_tail=tail,
        )

    def _finish(self, job: Job, worker: str, status: JobStatus, reason: str, **fields: object) -> JobStatus:
        if status is not JobStatus.COMPLETED:
            fields.setdefault("error", reason)
        self._store.finish(job.job_id, worker, status, reason, **fields)
        log.info("job ended", extra={"status": status.value, "reason": reason})
        return status

    def _release(self, job: Job, worker: str, reason: str, tail: str | None = None) -> JobStatus:
        if tail:
            self._store.renew(job.job_id, worker, self._config.lease_s, output_tail=tail)
        status = self._store.release(job.job_id, worker, reason)
        log.info("job handed back", extra={"status": status.value, "reason": reason})
        return status

    def _after_lost_lease(self, job: Job) -> JobStatus | None:
        try:
            current = self._store.get_job(job.job_id).status
        except RecordError:
            return None
        return current if current is JobStatus.CANCELLED else None

    def _comment(self, job: Job, status: JobStatus, duration_s: float) -> None:
        """Post the outcome on the PR; a failure here is logged, never fatal."""
        try:
            final = self._store.get_job(job.job_id)
            if status is JobStatus.COMPLETED:
                files = "\n".join(f"- `{f}`" for f in (final.changed_files or []))
                summary = f"✅ AIPM agent pushed {final.commit_sha} in {duration_s:.1f} s."
                body = f"{summary}\n\nChanged files:\n{files}"
            else:
                body = (
                    f"⚠️ AIPM agent: job ended as **{status.value}** after {duration_s:.1f} s: {final.reason}"
                )
            self._github.comment_on_pull_request(job.owner, job.repo_name, job.pr_number, body)
        except (GitHubError, RecordError) as err:
            log.warning("could not comment on the PR", extra={"error": str(err)})
