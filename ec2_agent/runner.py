"""Runs claimed jobs on a slot: checkout, CLI task, commit on the slot's thread; push, records and the PR
comment on the slot's publisher thread, so the slot's CLI can start its next job while the last one is
published. Every step is recorded in the job's timeline."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec2_agent import checks, followup
from ec2_agent.faults import SlotFault
from ec2_agent.jsonlog import job_context
from ec2_agent.prompting import strip_control, task_prompt, visible_controls
from ec2_agent.sandbox import Sandbox, SandboxFault
from ec2_agent.secret_screen import screen_secrets
from ec2_agent.sessions import AgentSession, ResumableSession, SessionError, TaskOutcome
from ec2_agent.sessions.base import given_credentials
from ec2_agent.workspace import (
    Checkout,
    Commit,
    GitError,
    PushRefused,
    PushRejected,
    TreeRefused,
    UnsafeReference,
    Workspace,
)
from lambda_src.github.client import GitHubClient
from lambda_src.github.errors import GitHubError
from lambda_src.records.models import OUTPUT_TAIL_MAX_CHARS, Job, JobStatus, SavedSession, utc_now_iso
from lambda_src.records.store import JobStore, LeaseLost, RecordError
from lambda_src.taskdoc import BranchDiff, quoted_inline

log = logging.getLogger(__name__)


@dataclass
class AdhocTask:
    """A prompt from POST /execute: it runs on the next free slot; `done` is set when it has run."""

    prompt: str
    timeout_s: float
    repository: tuple[str, str, str] | None = None  # (owner, repo, branch): run in that branch's workspace
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: TaskOutcome | None = None
    error: str | None = None


@dataclass
class SlotState:
    """What one slot owns: its workspace (the tree), its sandbox and its CLI session. Only its own thread
    touches the session."""

    id: int
    workspace: Workspace
    sandbox: Sandbox
    session_factory: Callable[[Path, Callable[[str], None]], AgentSession]
    session: AgentSession | None = None
    output_listener: Callable[[str], None] | None = None
    current_job: str | None = None
    idle_since: float = field(default_factory=time.monotonic)
    restarts: int = 0  # crashes + resets
    crashes: int = 0  # the session was found dead or was dropped after a failure
    resets: int = 0  # planned: a healthy session restarted on purpose (a fresh home after a job changed it)
    planned_drop: bool = False  # the last session was dropped on purpose, not after a fault
    started_once: bool = False
    ready: bool = False
    clean: bool = True
    running: JobHandle | None = None
    next: JobHandle | None = None
    scout: threading.Thread | None = None
    publisher: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"publish-{self.id}")

    def ensure_session(self) -> AgentSession:
        """A live session in the slot's sandbox, reset so nothing leaks from the previous job; a new one
        starts with a fresh home. Raises SessionError, SandboxFault."""
        if self.session is not None and self.session.alive:
            if not self.clean:
                self.session.reset()
                self.clean = True
            return self.session
        planned = self.planned_drop
        self.drop_session()
        if self.started_once:
            self.restarts += 1
            if planned:
                self.resets += 1
            else:
                self.crashes += 1
        self.started_once = True
        self.sandbox.reset_home()
        self.session = self.session_factory(self.sandbox.tree, self.emit)
        self.session.start()
        self.ready = True
        self.clean = True
        return self.session

    def prepare_sandbox(self) -> None:
        """At start: kill whatever an earlier agent process left in this slot's sandbox (kill -9, OOM)
        and make its tree and home. Raises SandboxFault."""
        self.sandbox.start()

    def tidy(self) -> None:
        """As soon as a job ends: kill every process in the sandbox but the CLI's main one, restore the
        paths of the home the CLI rewrites by itself (its profile's `home_restore`: session logs, memory)
        to pristine, compare the home with its pristine copy (any other difference: the session restarts
        with a fresh home), and reset
        the conversation, so the next job starts without waiting. A session that does not come back from
        the reset is dropped (the pool's healing restarts it)."""
        if self.session is None or self.clean:
            return
        try:
            killed = self.sandbox.kill_all_but_main()
        except SandboxFault as err:
            log.warning("the sandbox could not be cleaned; restarting it", extra={"error": str(err)})
            self.drop_session()
            return
        if killed:
            log.warning("killed processes the job left in the sandbox", extra={"count": len(killed)})
        try:
            self.sandbox.restore_home(self.session.profile.home_restore)
        except SandboxFault as err:
            log.warning("the CLI's home could not be restored; restarting it", extra={"error": str(err)})
            self.drop_session()
            return
        if self.sandbox.home_changed():
            log.warning("the CLI's home changed during the job; restarting with a fresh home")
            self.drop_session(planned=True)
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

    def run_adhoc(self, task: AdhocTask) -> None:
        """Run a POST /execute prompt in this slot's tree: emptied, or with `task.repository` the branch
        checked out as for a job (a fresh workspace, discarded after; nothing is committed or pushed).
        Never raises."""
        checkout: Checkout | None = None
        try:
            if task.repository is None:
                self.workspace.clear()
            else:
                owner, repo, branch = task.repository
                checkout = self.workspace.prepare(f"execute-{uuid.uuid4().hex}", owner, repo, branch)
            session = self.ensure_session()
            self.clean = False
            task.outcome = session.run_task(task.prompt, timeout_s=task.timeout_s, cancel=task.cancel)
            if task.outcome.kind in ("timed_out", "crashed"):
                self.drop_session()
        except (GitError, UnsafeReference) as err:
            task.error = f"the branch could not be checked out: {err}"
        except (SessionError, SlotFault, OSError) as err:
            task.error = str(err)
            self.drop_session()
        finally:
            if checkout is not None:
                self.workspace.discard(checkout)
            task.done.set()

    def emit(self, chunk: str) -> None:
        """Forward the session's output to whoever listens for the current job."""
        if self.output_listener is not None:
            self.output_listener(chunk)

    def drop_session(self, *, planned: bool = False) -> None:
        """Close the session and kill everything left in the slot's sandbox. `planned`: on purpose, not
        after a fault (the next start counts as a reset, not a crash)."""
        if self.session is not None:
            self.planned_drop = planned
            self.session.close()
        self.session = None
        self.ready = False
        try:
            self.sandbox.stop()
        except SandboxFault as err:
            log.error("sandbox processes survived SIGKILL", extra={"error": str(err)})


# A CLI's session id before it is stored or shown: an ACP agent's (a UUID for the agents seen), or the UUID
# the headless session chose for its CLI (session_args).
# It starts with a letter or digit: an id is passed as its own argv element (resume_args), never as a flag.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@dataclass(frozen=True)
class RunnerConfig:
    worker_prefix: str
    lease_s: float
    job_timeout_s: float
    saved_session_max_bytes: int = 300_000  # a PR's saved CLI session (gzip); 0: never saved or resumed


class LeaseKeeper:
    """Renews a job's lease every lease_s/3 until stopped, storing the output tail.

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
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                tail = screen_secrets(self.tail) or None
                self._store.renew(self._job_id, self._worker, self._lease_s, output_tail=tail)
            except LeaseLost:
                log.warning("lease lost; interrupting the CLI", extra={"job_id": self._job_id})
                self.lost = True
                self._cancel.set()
                return
            except Exception:
                log.exception("lease renewal failed; retrying", extra={"job_id": self._job_id})


@dataclass
class JobHandle:
    """A job while this agent holds it: its lease keeper, its own cancel event, when it started."""

    job: Job
    worker: str
    keeper: LeaseKeeper
    cancel: threading.Event
    started: float = field(default_factory=time.monotonic)
    shutting_down: bool = False
    checkout: Checkout | None = None
    reason: str = ""
    commit_sha: str | None = None
    changed_files: list[str] = field(default_factory=list)
    task_md: bytes | None = None  # the branch's TASK.md while the CLI is shown another (a brief)
    task_original: bytes = b""  # the branch's TASK.md
    task_shown: str = ""  # what the CLI's first turn read as TASK.md
    checks_config: Future[checks.ChecksConfig | None] | None = None  # `.aipm.yml` of the base branch
    check_results: list[checks.CheckResult] = field(default_factory=list)
    check_rounds: int = 0

    def record_output(self, chunk: str) -> None:
        self.keeper.tail = (self.keeper.tail + chunk)[-OUTPUT_TAIL_MAX_CHARS:]

    def hand_back(self) -> None:
        """Interrupt the job because the agent is stopping; it goes back to the queue."""
        self.shutting_down = True
        self.cancel.set()


class _ChecksPassed:
    """The checks passed (or there are none): go on to the commit."""


CHECKS_PASSED = _ChecksPassed()


@dataclass(frozen=True)
class Publication:
    """A committed job waiting to be pushed."""

    handle: JobHandle
    checkout: Checkout
    commit: Commit
    tail: str
    session: SessionSave | None = None  # the CLI's conversation, kept for the PR once the push landed


@dataclass(frozen=True)
class SessionSave:
    """The conversation a committed job's CLI had (`saved`), or why it could not be packed (`problem`: the
    PR's older saved session is then stale, and is forgotten once this job's commit is pushed)."""

    profile: str
    saved: SavedSession | None = None
    problem: str | None = None


class JobRunner:
    """Takes claimed jobs through their steps. Every exit path leaves a job terminal, queued, or lost."""

    def __init__(self, store: JobStore, github: GitHubClient, config: RunnerConfig) -> None:
        self._store = store
        self._github = github
        self._config = config
        # Reads each job's `.aipm.yml` from its base branch while the CLI works.
        self._lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="checks-config")

    def lease_owner(self, slot_id: int) -> str:
        """A fresh lease owner for one claim, `<agentId>/slot-<n>/<claim>`: unique per claim, so a run that
        was cancelled and then retried can never act under the retry's claim on the same slot (its renewals
        and transitions are conditional on the owner, and fail with LeaseLost)."""
        return f"{self._config.worker_prefix}/slot-{slot_id}/{uuid.uuid4().hex[:8]}"

    def hold(self, job: Job) -> JobHandle:
        """Start holding a job a slot has claimed (`job` as the claim returned it): its lease is renewed
        from now on."""
        if job.lease_owner is None:
            raise ValueError(f"job {job.job_id} is not claimed")
        cancel = threading.Event()
        worker = job.lease_owner
        keeper = LeaseKeeper(self._store, job.job_id, worker, self._config.lease_s, cancel)
        return JobHandle(job=job, worker=worker, keeper=keeper, cancel=cancel)

    def run(
        self, slot: SlotState, handle: JobHandle, *, while_generating: Callable[[Path], None] | None = None
    ) -> None:
        """Run a held job up to its commit, then queue it on the slot's publisher. `while_generating` is
        called with the working tree once the CLI has the prompt (the pool looks ahead meanwhile).

        Returns when the slot's CLI is free for the next job.
        """
        slot.running = handle
        slot.output_listener = handle.record_output
        try:
            result = self._generate(slot, handle, while_generating)
        except LeaseLost:
            result = None
        except Exception:
            handle.keeper.stop()
            raise
        finally:
            slot.running = None
            slot.output_listener = None
        if isinstance(result, Publication):
            slot.publisher.submit(self._publish, slot, result)
        else:
            if handle.checkout is not None:
                slot.workspace.discard(handle.checkout)
            self._close(handle, result)

    def release_held(self, handle: JobHandle, reason: str) -> None:
        """Give back a job held but not started (the agent is stopping), using no attempt; never raises."""
        try:
            self._release(handle, reason, counted=False)
        except RecordError as err:
            log.warning("could not hand a held job back; its lease will expire", extra={"error": str(err)})
        finally:
            handle.keeper.stop()

    def _generate(
        self, slot: SlotState, handle: JobHandle, while_generating: Callable[[Path], None] | None
    ) -> Publication | JobStatus | None:
        job, worker = handle.job, handle.worker
        if handle.cancel.is_set():
            return None  # cancelled while it waited for this slot
        store = self._store
        store.advance(
            job.job_id, worker, JobStatus.PREPARING, f"checking out {job.branch_name} on slot {slot.id}"
        )
        try:
            checkout = slot.workspace.prepare(job.job_id, job.owner, job.repo_name, job.branch_name)
        except UnsafeReference as err:
            return self._finish(handle, JobStatus.FAILED, f"refused: {err}")
        except SlotFault as err:
            return self._release(handle, f"slot {slot.id} could not prepare the job: {err}", counted=False)
        except GitError as err:
            return self._release(handle, f"checkout failed: {err}")
        handle.checkout = checkout
        tree = checkout.tree
        if not (tree / "TASK.md").is_file() or (tree / "TASK.md").is_symlink():
            return self._finish(handle, JobStatus.FAILED, "TASK.md is missing from the branch")
        handle.task_original = (tree / "TASK.md").read_bytes()
        if job.follow_up is not None:
            handle.task_md = followup.show_brief(
                tree,
                job,
                conversation=followup.read_conversation(self._github, job),
                diff=self._branch_diff(slot, checkout, job),
            )
        handle.task_shown = (tree / "TASK.md").read_text(encoding="utf-8", errors="replace")
        handle.checks_config = self._lookups.submit(self._read_checks, job)
        resumed: str | None = None
        for first_try in (True, False):
            try:
                session = slot.ensure_session()
            except SlotFault as err:
                slot.drop_session()
                return self._release(handle, f"slot {slot.id} could not start the CLI: {err}", counted=False)
            except SessionError as err:
                slot.drop_session()
                return self._release(handle, f"the CLI session could not start: {err}")
            slot.clean = False  # from here the CLI may hold something of this job
            if first_try:
                resumed = self._resume(slot, session, handle, checkout)
            if session.alive:
                break
            slot.drop_session()  # a saved session the CLI could not load took it down: a fresh one
            resumed = None
        detail = f"prompt sent to the CLI on slot {slot.id}"
        if resumed is not None:
            detail += f" (resumed the PR's session {resumed})"
        store.advance(job.job_id, worker, JobStatus.GENERATING, detail)
        outcome = session.run_task(
            task_prompt(),
            timeout_s=self._config.job_timeout_s,
            cancel=handle.cancel,
            on_prompt_sent=(lambda: while_generating(tree)) if while_generating else None,
        )
        log.info("CLI finished", extra={"outcome": outcome.kind, "duration_s": round(outcome.duration_s, 3)})
        if resumed is not None and isinstance(session, ResumableSession) and session.session_id != resumed:
            # The CLI refused the saved conversation when the turn ran (a headless CLI's resume flag): the
            # turn ran again in a new one, with the brief only.
            note = f"the PR's session {resumed} could not be resumed; the CLI worked in a new session"
            log.warning(note)
            store.advance(job.job_id, worker, JobStatus.GENERATING, note)
        elif (
            resumed is not None
            and outcome.kind in ("failed", "crashed", "timed_out")
            # A conversation that made the turn fail would make every later follow-up fail the same way.
            and self._forget(job, session.profile.name, f"the resumed turn ended {outcome.kind}")
        ):
            note = f"the PR's session {resumed} is forgotten: the next follow-up starts a new one"
            store.advance(job.job_id, worker, JobStatus.GENERATING, note)
        return self._after_cli(slot, handle, checkout, outcome)

    def _after_cli(
        self, slot: SlotState, handle: JobHandle, checkout: Checkout, outcome: TaskOutcome
    ) -> Publication | JobStatus | None:
        job, tail = handle.job, screen_secrets(outcome.output_tail)
        if outcome.kind == "cancelled":
            if not slot.session or not slot.session.alive:
                slot.drop_session()
            if handle.keeper.lost:
                return None
            # A graceful stop (SIGTERM on every redeploy) is not the job's failure: it uses no attempt.
            reason = "the agent is shutting down; handed back to the queue"
            return self._release(handle, reason, counted=False)
        if outcome.kind == "timed_out":
            slot.drop_session()
            reason = f"the CLI did not finish within {self._config.job_timeout_s:g} s; it was interrupted"
            return self._finish(handle, JobStatus.TIMED_OUT, reason, output_tail=tail)
        if outcome.kind == "crashed":
            slot.drop_session()
            return self._release(handle, f"the CLI exited unexpectedly (status {outcome.exit_status})", tail)
        if outcome.kind == "failed":
            return self._finish(
                handle, JobStatus.FAILED, outcome.reason or "the CLI reported an error", output_tail=tail
            )
        try:
            # Nothing the CLI started may keep changing the tree between its check and the commit.
            slot.sandbox.kill_all_but_main()
        except SandboxFault as err:
            slot.drop_session()
            return self._release(handle, f"the sandbox could not be stopped: {err}", tail, counted=False)
        checked = self._checks(slot, handle, checkout)
        if not isinstance(checked, _ChecksPassed):
            return checked
        self._store.advance(job.job_id, handle.worker, JobStatus.COMMITTING, "committing the CLI's changes")
        title = strip_control(job.task_title)
        message = f"feat: {title}\n\nGenerated by the AIPM agent (job {job.job_id})."
        if handle.task_md is not None:  # the CLI was shown a brief: the branch's TASK.md replaces it
            try:
                followup.put_back(checkout.tree, handle.task_md)
            except OSError as err:
                reason = f"TASK.md could not be restored: {err}"
                return self._finish(handle, JobStatus.FAILED, reason, output_tail=tail)
        if job.follow_up is not None:
            message = strip_control(followup.commit_message(job, title), keep_newlines=True)
        try:
            commit = slot.workspace.commit_all(checkout, message)
        except TreeRefused as err:
            return self._finish(
                handle, JobStatus.FAILED, f"the work tree was refused: {err}", output_tail=tail
            )
        except GitError as err:
            return self._finish(handle, JobStatus.FAILED, f"commit failed: {err}", output_tail=tail)
        except SlotFault as err:
            slot.drop_session()
            return self._release(handle, f"the tree could not be taken back: {err}", tail, counted=False)
        if commit is None:
            reason = "the CLI finished without changing any file"
            return self._finish(handle, JobStatus.NO_CHANGES, reason, output_tail=tail)
        return Publication(
            handle=handle, checkout=checkout, commit=commit, tail=tail, session=self._pack_session(slot, job)
        )

    def _resume(
        self, slot: SlotState, session: AgentSession, handle: JobHandle, checkout: Checkout
    ) -> str | None:
        """For a follow-up job on a CLI that can load sessions: put the PR's saved session back in the CLI's
        home and continue it (ACP session/load, or a headless CLI's resume_args from its first turn on), so
        the CLI has the PR's whole conversation, not only the brief. Returns the resumed session's id; None
        when nothing was saved, the CLI cannot resume, or it failed (logged: the job goes on in a new
        session, with the brief). A session saved with a commit the branch no longer holds (force-pushed
        past it: the conversation describes work that is gone) is forgotten, and the timeline says so."""
        job = handle.job
        if job.follow_up is None or not self._config.saved_session_max_bytes:
            return None
        if not isinstance(session, ResumableSession) or not session.can_resume:
            return None
        profile = session.profile
        try:
            saved = self._store.get_saved_session(job.owner, job.repo_name, job.pr_number, profile.name)
            if saved is None or SESSION_ID.fullmatch(saved.session_id) is None:
                return None
            if saved.commit_sha is not None and not slot.workspace.holds(checkout, saved.commit_sha):
                if self._forget(job, profile.name, "the branch no longer holds its commit"):
                    note = (
                        f"the PR's session {saved.session_id} is forgotten: the branch no longer holds "
                        f"{saved.commit_sha[:12]}, the commit it was saved with"
                    )
                    self._store.advance(job.job_id, handle.worker, JobStatus.PREPARING, note)
                return None
            slot.sandbox.load_home_paths(saved.state, profile.session_state, profile.session_state_rename)
            session.resume(saved.session_id)
        except (RecordError, SandboxFault, SessionError, GitError, OSError) as err:
            log.warning("could not resume the PR's session; a new one", extra={"error": str(err)[:300]})
            return None
        extra = {"cli_session": saved.session_id, "saved_by": saved.job_id}
        log.info("resumed the PR's session", extra=extra)
        return saved.session_id

    def _pack_session(self, slot: SlotState, job: Job) -> SessionSave | None:
        """After a job that made a commit, while the CLI's home is as the job left it: its conversation with
        the PR (its saved-session files and the session id), to keep for the PR's follow-ups on any host
        once the commit is pushed (:meth:`_keep_session`). None when the CLI cannot resume sessions."""
        session = slot.session
        if not self._config.saved_session_max_bytes or not isinstance(session, ResumableSession):
            return None
        if not session.can_resume:
            return None
        profile, session_id = session.profile, session.session_id
        if session_id is None or SESSION_ID.fullmatch(session_id) is None:
            return SessionSave(profile.name, problem="the CLI gave no usable session id")
        try:
            state = slot.sandbox.save_home_paths(
                profile.session_state, self._config.saved_session_max_bytes, given_credentials(profile)
            )
        except (SandboxFault, OSError) as err:
            return SessionSave(profile.name, problem=str(err)[:300])
        if state is None:
            return SessionSave(profile.name, problem="the CLI saved no session files")
        saved = SavedSession(
            profile=profile.name,
            session_id=session_id,
            state=state,
            job_id=job.job_id,
            saved_at=utc_now_iso(),
            ttl=job.ttl,
        )
        return SessionSave(profile.name, saved=saved)

    def _keep_session(self, job: Job, save: SessionSave, commit_sha: str) -> str | None:
        """Once the job's commit is on the branch: keep its conversation for the PR's follow-ups, or, when it
        could not be packed or written, forget the PR's older one (it no longer matches the branch; the next
        follow-up gets the brief). Returns a note for the timeline when the conversation was not kept;
        never raises."""
        problem, saved = save.problem, save.saved
        if saved is not None:
            try:
                saved = saved.model_copy(update={"commit_sha": commit_sha})
                self._store.put_saved_session(job.owner, job.repo_name, job.pr_number, saved)
            except RecordError as err:
                problem = str(err)[:300]
            else:
                extra = {"cli_session": saved.session_id, "bytes": len(saved.state)}
                log.info("saved the PR's session", extra=extra)
                return None
        reason = f"the CLI's session could not be saved ({problem})"
        self._forget(job, save.profile, reason)
        return f"{reason}: the next follow-up starts a new session with the brief"

    def _forget(self, job: Job, profile: str, reason: str) -> bool:
        """Delete the PR's saved session for `profile` (the next follow-up starts a new one with the
        brief), logged with `reason`. False (logged) if it could not be deleted; never raises."""
        try:
            self._store.delete_saved_session(job.owner, job.repo_name, job.pr_number, profile)
        except RecordError as err:
            log.warning("could not forget the PR's session", extra={"error": str(err)[:300]})
            return False
        log.warning("forgot the PR's saved session", extra={"reason": reason})
        return True

    def _branch_diff(self, slot: SlotState, checkout: Checkout, job: Job) -> BranchDiff:
        """The diff so far for a follow-up's brief; a note instead when git cannot make it."""
        try:
            text, cut = slot.workspace.branch_diff(
                checkout, job.base_branch, max_bytes=followup.DIFF_MAX_BYTES
            )
        except (GitError, UnsafeReference) as err:
            log.warning("could not diff the branch against its base", extra={"error": str(err)[:300]})
            return BranchDiff("", note=f"The diff against {job.base_branch} could not be made: {err}")
        return BranchDiff(text, truncated=cut)

    def _read_checks(self, job: Job) -> checks.ChecksConfig | None:
        """`.aipm.yml` of the job's base branch, from GitHub (never the CLI's tree). Raises
        ChecksConfigInvalid, GitHubError."""
        text = self._github.file_text(job.owner, job.repo_name, checks.CONFIG_FILE, job.base_branch)
        return checks.load_config(text)

    def _checks(
        self, slot: SlotState, handle: JobHandle, checkout: Checkout
    ) -> _ChecksPassed | Publication | JobStatus | None:
        """Run the repository's checks after the CLI's turn; while they fail and rounds are left, give the
        CLI another turn with the failures at the top of its TASK.md. CHECKS_PASSED (also: no checks), or
        how the job ended (`checks_failed`: nothing is pushed)."""
        job = handle.job
        try:
            config = handle.checks_config.result() if handle.checks_config is not None else None
        except checks.ChecksConfigInvalid as err:
            return self._finish(handle, JobStatus.FAILED, f"the repository's checks are invalid: {err}")
        except GitHubError as err:
            reason = f"{checks.CONFIG_FILE} could not be read from {job.base_branch}: {err}"
            return self._release(handle, reason)
        if config is None or not config.checks:
            return CHECKS_PASSED
        while True:
            handle.check_rounds += 1
            try:
                results = checks.run_checks(slot.sandbox, config, {})
            except (OSError, SandboxFault) as err:
                return self._release(handle, f"the checks could not start: {err}", counted=False)
            handle.check_results = results
            detail = checks.round_detail(handle.check_rounds, results)
            self._store.advance(job.job_id, handle.worker, JobStatus.GENERATING, detail)
            if all(result.passed for result in results):
                return CHECKS_PASSED
            tail = "\n\n".join(f"{r.summary}\n{r.output_tail}" for r in results if not r.passed)
            if handle.check_rounds >= config.max_rounds:
                failed = ", ".join(r.name for r in results if not r.passed)
                reason = (
                    f"checks still failing after {handle.check_rounds} round(s): {failed}; nothing was pushed"
                )
                return self._finish(handle, JobStatus.CHECKS_FAILED, reason, output_tail=tail)
            brief = checks.failure_brief(handle.task_shown, handle.check_rounds, results)
            if handle.task_md is None:
                handle.task_md = handle.task_original  # put back before the commit
            try:
                followup.write_task_md(checkout.tree, brief.encode("utf-8"))
            except OSError as err:
                return self._finish(handle, JobStatus.FAILED, f"TASK.md could not be written: {err}")
            session = slot.session
            if session is None or not session.alive:
                slot.drop_session()
                return self._release(handle, "the CLI session ended before its next turn")
            outcome = session.run_task(
                task_prompt(), timeout_s=self._config.job_timeout_s, cancel=handle.cancel
            )
            if outcome.kind != "completed":
                return self._after_cli(slot, handle, checkout, outcome)
            try:
                slot.sandbox.kill_all_but_main()
            except SandboxFault as err:
                slot.drop_session()
                return self._release(handle, f"the sandbox could not be stopped: {err}", counted=False)

    def _publish(self, slot: SlotState, pub: Publication) -> None:
        """On the slot's publisher thread: push, record, comment. Never raises (the lease expiry covers a
        failure here: the job is retried)."""
        handle = pub.handle
        with job_context(handle.job.job_id):
            try:
                status = self._push(slot, pub)
            except LeaseLost:
                status = None
            except Exception:
                log.exception("publishing failed; the lease will expire and the job will be retried")
                handle.keeper.stop()
                return
            finally:
                slot.workspace.discard(pub.checkout)
            self._close(handle, status)

    def _push(self, slot: SlotState, pub: Publication) -> JobStatus:
        handle, commit, job = pub.handle, pub.commit, pub.handle.job
        # A job cancelled while the CLI worked must not reach the PR: confirm the lease right before pushing.
        self._store.renew(job.job_id, handle.worker, self._config.lease_s, output_tail=pub.tail or None)
        try:
            sha = slot.workspace.push(pub.checkout, commit.sha)
        except PushRefused as err:
            # The repository's rules refuse it: running the CLI again cannot change that.
            reason = f"push refused by the repository: {err.message}"
            return self._finish(handle, JobStatus.FAILED, reason, output_tail=pub.tail)
        except PushRejected as err:
            return self._finish(handle, JobStatus.FAILED, f"push rejected: {err}", output_tail=pub.tail)
        except GitError as err:
            return self._release(handle, f"push failed: {err}", pub.tail)
        detail = f"pushed {sha[:12]} to {job.branch_name}"
        if pub.session is not None and (note := self._keep_session(job, pub.session, sha)) is not None:
            detail += f"; {note}"
        self._store.advance(job.job_id, handle.worker, JobStatus.PUSHED, detail, commit_sha=sha)
        files = ", ".join(commit.changed_files[:20])
        return self._finish(
            handle,
            JobStatus.COMPLETED,
            f"{len(commit.changed_files)} file(s) changed: {files}",
            commit_sha=sha,
            changed_files=commit.changed_files,
            output_tail=pub.tail,
        )

    def _finish(self, handle: JobHandle, status: JobStatus, reason: str, **fields: Any) -> JobStatus:
        if status is not JobStatus.COMPLETED:
            fields.setdefault("error", reason)
        self._store.finish(handle.job.job_id, handle.worker, status, reason, **fields)
        handle.reason = reason
        handle.commit_sha = fields.get("commit_sha")
        handle.changed_files = list(fields.get("changed_files") or [])
        log.info("job ended", extra={"status": status.value, "reason": reason})
        return status

    def _release(
        self, handle: JobHandle, reason: str, tail: str | None = None, *, counted: bool = True
    ) -> JobStatus:
        """Back to the queue; `counted=False` when the job is not at fault (it then uses no attempt)."""
        if tail:
            self._store.renew(handle.job.job_id, handle.worker, self._config.lease_s, output_tail=tail)
        status = self._store.release(handle.job.job_id, handle.worker, reason, counted=counted)
        log.info("job handed back", extra={"status": status.value, "reason": reason, "counted": counted})
        return status

    def _close(self, handle: JobHandle, status: JobStatus | None) -> None:
        """Stop renewing; if the job ended here (or was cancelled), say so on the PR."""
        handle.keeper.stop()
        if status is None:
            cancelled = self._cancelled_elsewhere(handle.job)
            if cancelled is None:
                return
            status, handle.reason = JobStatus.CANCELLED, cancelled.reason or "cancelled"
        if status.terminal:
            self._comment(handle, status, time.monotonic() - handle.started)

    def _cancelled_elsewhere(self, job: Job) -> Job | None:
        """The job as stored, if it was cancelled while this agent held it; None otherwise."""
        try:
            current = self._store.get_job(job.job_id)
        except RecordError:
            return None
        return current if current.status is JobStatus.CANCELLED else None

    def _comment(self, handle: JobHandle, status: JobStatus, duration_s: float) -> None:
        """Post the outcome on the PR; a failure here is logged, never fatal."""
        job = handle.job
        if job.follow_up is not None:
            self._reply(handle, status, duration_s)
            return
        if status is JobStatus.COMPLETED:
            files = "\n".join(f"- {quoted_inline(visible_controls(f))}" for f in handle.changed_files)
            summary = f"✅ AIPM agent pushed {handle.commit_sha} in {duration_s:.1f} s."
            body = f"{summary}\n\nChanged files:\n{files}"
        else:
            reason = quoted_inline(visible_controls(handle.reason or ""))  # may quote names the CLI chose
            body = f"⚠️ AIPM agent: job ended as **{status.value}** after {duration_s:.1f} s: {reason}"
        if handle.check_results:
            rounds = f"{handle.check_rounds} round(s)"
            body += f"\n\n{checks.comment_section(handle.check_results)}\n\n_Checks ran {rounds}._"
        try:
            self._github.comment_on_pull_request(job.owner, job.repo_name, job.pr_number, body)
        except GitHubError as err:
            log.warning("could not comment on the PR", extra={"error": str(err)})

    def _reply(self, handle: JobHandle, status: JobStatus, duration_s: float) -> None:
        """A follow-up's outcome as a reply on the comment that asked: in a review comment's thread, else
        on the PR (linking the comment). A failure here is logged, never fatal."""
        job, follow_up = handle.job, handle.job.follow_up
        assert follow_up is not None
        if status is JobStatus.COMPLETED:
            detail = "Changed files:\n" + "\n".join(
                f"- {quoted_inline(visible_controls(f))}" for f in handle.changed_files
            )
        else:
            detail = visible_controls(handle.reason or "")
        body = followup.reply_body(
            job, status, commit_sha=handle.commit_sha, detail=detail, duration_s=duration_s
        )
        if handle.check_results:
            body += f"\n\n{checks.comment_section(handle.check_results)}"
        try:
            if follow_up.event == "pull_request_review_comment":
                self._github.reply_to_review_comment(
                    job.owner, job.repo_name, job.pr_number, follow_up.comment_id, body
                )
            else:
                self._github.comment_on_pull_request(job.owner, job.repo_name, job.pr_number, body)
        except GitHubError as err:
            log.warning("could not reply to the comment", extra={"error": str(err)})
