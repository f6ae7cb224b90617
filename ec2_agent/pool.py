"""The slot pool: N slots, each a thread with its own CLI session and workspace, fed from the job table.

Scheduling is event driven: a slot that frees takes the oldest queued job at once; a nudge wakes idle
slots at once; a periodic sweep requeues expired leases and wakes everyone in case a nudge was lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from ec2_agent.faults import SlotFault
from ec2_agent.jsonlog import job_context, slot_var
from ec2_agent.runner import AdhocTask, JobHandle, JobRunner, SlotState
from ec2_agent.sessions import SessionError
from ec2_agent.workspace import GitError, UnsafeReference
from lambda_src.records.models import Heartbeat, Job, utc_now_iso
from lambda_src.records.models import SlotState as SlotRecord
from lambda_src.records.store import JobStore

log = logging.getLogger(__name__)

MAX_HINTS = 256
QUEUE_COUNT_INTERVAL_S = 30.0  # the queue depth in /health and the heartbeat: a count reads every queued item


def agent_version() -> str:
    try:
        return version("aipm-delegate")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class PoolConfig:
    agent_id: str
    lease_s: float
    sweep_interval_s: float
    reclaim_interval_s: float
    heartbeat_interval_s: float
    restart_backoff_s: float
    restart_backoff_max_s: float


class AgentPool:
    """Owns the slot threads, the sweeper and the heartbeat. `start()`, then `drain()` to stop."""

    def __init__(
        self, config: PoolConfig, store: JobStore, runner: JobRunner, slots: Sequence[SlotState]
    ) -> None:
        self._config = config
        self._store = store
        self._runner = runner
        self.slots = list(slots)
        self._wake = threading.Condition()
        self._hints: deque[str] = deque(maxlen=MAX_HINTS)
        self._adhoc: deque[AdhocTask] = deque()
        self._draining = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: dict[int, str] = {}
        self._heal_at: dict[int, float] = {}
        self._heal_delay: dict[int, float] = {}
        self._fleet: list[Heartbeat] = []
        self._counted_at = float("-inf")
        self.endpoint: str | None = None
        self.started_at = time.monotonic()
        self.queued_seen = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(f"slot-{slot.id}", self._slot_loop, slot)
        self._spawn("sweeper", self._periodic, self._config.sweep_interval_s, self._sweep)
        self._spawn("reclaimer", self._periodic, self._config.reclaim_interval_s, self._reclaim)
        self._spawn("heartbeat", self._periodic, self._config.heartbeat_interval_s, self.write_heartbeat)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def drain(self, deadline_s: float) -> None:
        """Stop claiming; let running jobs finish for up to `deadline_s`, then interrupt them and hand
        them back to the queue. Closes every session. Returns when all slot threads have stopped."""
        self._draining.set()
        self.nudge(None)
        deadline = time.monotonic() + deadline_s
        for thread in self._threads:
            if thread.name.startswith("slot-"):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            if slot.running is not None:
                slot.running.hand_back()
            if slot.scout is not None:
                slot.scout.join(timeout=30)
            if slot.next is not None:
                self._runner.release_held(slot.next, "the agent is shutting down; handed back to the queue")
                slot.next = None
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        for slot in self.slots:
            slot.publisher.shutdown(wait=True)
            slot.drop_session()
        self.write_heartbeat()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    # -- scheduling -------------------------------------------------------------------------------

    def nudge(self, job_id: str | None) -> None:
        """Wake idle slots now; `job_id` (from the dispatcher) is tried before the oldest queued job."""
        with self._wake:
            if job_id:
                self._hints.append(job_id)
            self._wake.notify_all()

    @property
    def pending_adhoc(self) -> int:
        """/execute prompts waiting for a free slot."""
        with self._wake:
            return len(self._adhoc)

    def execute(
        self, prompt: str, timeout_s: float, *, repository: tuple[str, str, str] | None = None
    ) -> AdhocTask:
        """Queue an ad-hoc prompt for the next free slot (ahead of table jobs: someone is waiting on it);
        `repository` (owner, repo, branch): run it in that branch's workspace."""
        task = AdhocTask(prompt=prompt, timeout_s=timeout_s, repository=repository)
        with self._wake:
            self._adhoc.append(task)
            self._wake.notify_all()
        return task

    def _slot_loop(self, slot: SlotState) -> None:
        slot_var.set(slot.id)
        self._warm(slot)
        woken = True
        while not self._draining.is_set():
            if woken:
                with self._wake:
                    adhoc = self._adhoc.popleft() if self._adhoc else None
                if adhoc is not None:
                    if not adhoc.cancel.is_set():
                        slot.run_adhoc(adhoc)
                        slot.tidy()
                    continue
                handle = self._take_next(slot)
                if handle is not None:
                    self._run(slot, handle)
                    continue
            self._heal(slot)
            with self._wake:
                if self._draining.is_set() or self._hints or self._adhoc:
                    woken = True
                    continue
                # A timer wake-up only checks the session; only a nudge looks at the queue.
                woken = self._wake.wait(timeout=self._wait_s(slot))

    def _wait_s(self, slot: SlotState) -> float:
        """An idle slot sleeps until a nudge (the sweeper nudges when it sees queued work); it wakes every
        AIPM_SWEEP_INTERVAL_S to check its CLI is alive, sooner when a restart attempt is due."""
        wait = self._config.sweep_interval_s
        heal_at = self._heal_at.get(slot.id)
        if heal_at is not None:
            wait = min(wait, max(0.05, heal_at - time.monotonic()))
        return wait

    def _claim_next(self, slot: SlotState) -> Job | None:
        worker = self._runner.lease_owner(slot.id)
        while True:
            with self._wake:
                hint = self._hints.popleft() if self._hints else None
            if hint is None:
                break
            job = self._store.claim(hint, worker, self._config.lease_s)
            if job is not None:
                return job
        for candidate in self._store.oldest_queued(limit=len(self.slots) + 1):
            job = self._store.claim(candidate.job_id, worker, self._config.lease_s)
            if job is not None:
                return job
        return None

    def _take_next(self, slot: SlotState) -> JobHandle | None:
        """The job this slot looked ahead to, else the next one it can claim."""
        if slot.next is not None:
            handle, slot.next = slot.next, None
            return handle
        job = self._claim_next(slot)
        return self._runner.hold(job) if job is not None else None

    def _run(self, slot: SlotState, handle: JobHandle) -> None:
        job = handle.job
        self._busy[slot.id] = job.job_id
        slot.current_job = job.job_id
        try:
            with job_context(job.job_id):
                log.info("starting", extra={"attempt": job.attempts, "branch": job.branch_name})
                try:
                    self._runner.run(slot, handle, while_generating=lambda _tree: self._look_ahead(slot))
                except Exception:
                    log.exception("job runner failed; the lease will expire and the job will be retried")
                    slot.drop_session()
        finally:
            slot.tidy()
            if slot.scout is not None:
                slot.scout.join(timeout=60)
                slot.scout = None
            self._busy.pop(slot.id, None)
            slot.current_job = None
            slot.idle_since = time.monotonic()

    # -- look-ahead -------------------------------------------------------------------------------

    def _look_ahead(self, slot: SlotState) -> None:
        """While the slot's CLI works, claim its next job and fetch that branch, so the CLI can start it
        the moment it is free. Only when no slot anywhere is idle: an idle slot must never wait behind a
        job held here."""
        if self._draining.is_set() or slot.next is not None or not self._fleet_busy(slot):
            return
        slot.scout = threading.Thread(target=self._scout, args=(slot,), name=f"scout-{slot.id}", daemon=True)
        slot.scout.start()

    def _scout(self, slot: SlotState) -> None:
        slot_var.set(slot.id)
        try:
            job = self._claim_next(slot)
            if job is None:
                return
            handle = self._runner.hold(job)
            slot.next = handle
            with job_context(job.job_id):
                log.info("claimed ahead", extra={"branch": job.branch_name})
                try:
                    slot.workspace.fetch(job.owner, job.repo_name, job.branch_name)
                except (GitError, UnsafeReference, SlotFault) as err:
                    log.info("fetch ahead failed; the checkout will say why", extra={"error": str(err)})
        except Exception:
            log.exception("look-ahead failed")

    def _fleet_busy(self, me: SlotState) -> bool:
        """True when no other slot, here or (by their last heartbeats) on other agents, is free."""
        if any(s is not me and s.id not in self._busy and s.ready for s in self.slots):
            return False
        now_ms = time.time_ns() // 1_000_000
        fresh_ms = 3 * self._config.heartbeat_interval_s * 1000
        for beat in self._fleet:
            if beat.agent_id == self._config.agent_id or beat.draining or now_ms - beat.at_ms > fresh_ms:
                continue
            if beat.free_slots:
                return False
        return True

    # -- health -----------------------------------------------------------------------------------

    def _warm(self, slot: SlotState) -> None:
        """Start the slot's session in its own directory so the pool reports ready CLIs at boot."""
        try:
            slot.prepare_sandbox()
        except SlotFault as err:
            log.error("the slot's sandbox cannot be prepared", extra={"error": str(err)})
        self._heal(slot, force=True)

    def _heal(self, slot: SlotState, *, force: bool = False) -> None:
        """Restart a dead idle session, with exponential backoff between failed attempts."""
        if slot.session is not None and slot.session.alive:
            return
        if not force and time.monotonic() < self._heal_at.get(slot.id, 0.0):
            return
        try:
            slot.drop_session()
            slot.ensure_session()
        except (SessionError, SlotFault) as err:
            delay = min(
                self._heal_delay.get(slot.id, self._config.restart_backoff_s / 2) * 2,
                self._config.restart_backoff_max_s,
            )
            self._heal_delay[slot.id] = delay
            self._heal_at[slot.id] = time.monotonic() + delay
            log.warning(
                "CLI session failed to start; retrying", extra={"retry_in_s": delay, "error": str(err)}
            )
            return
        self._heal_delay.pop(slot.id, None)
        self._heal_at.pop(slot.id, None)

    # -- periodic work ----------------------------------------------------------------------------

    def _periodic(self, interval_s: float, action: Callable[[], None]) -> None:
        while not self._stopped.wait(interval_s):
            try:
                action()
            except Exception:
                log.exception("periodic task failed")

    def _sweep(self) -> None:
        """Catch what a lost nudge missed: one cheap look at the queue, only while a slot is idle."""
        if self._draining.is_set() or len(self._busy) == len(self.slots):
            return
        oldest = self._store.oldest_queued(limit=1)
        if oldest:
            self.nudge(oldest[0].job_id)

    def _reclaim(self) -> None:
        """Return jobs whose lease expired (their worker died) to the queue, or fail them."""
        reclaimed = self._store.requeue_expired()
        for job_id, status in reclaimed:
            log.warning(
                "reclaimed a job with an expired lease", extra={"job_id": job_id, "status": status.value}
            )
        if reclaimed:
            self.nudge(None)

    def slot_records(self) -> list[SlotRecord]:
        now = time.monotonic()
        return [
            SlotRecord(
                id=slot.id,
                busy=slot.id in self._busy,
                ready=slot.ready,
                current_job=self._busy.get(slot.id),
                idle_s=0.0 if slot.id in self._busy else round(now - slot.idle_since, 1),
                restarts=slot.restarts,
                crashes=slot.crashes,
                resets=slot.resets,
            )
            for slot in self.slots
        ]

    def write_heartbeat(self) -> None:
        """Record this agent's slots, and refresh what it knows of the queue and the other agents."""
        if time.monotonic() - self._counted_at >= QUEUE_COUNT_INTERVAL_S:
            self.queued_seen = self._store.count_queued()
            self._counted_at = time.monotonic()
        now_ms = time.time_ns() // 1_000_000
        self._store.put_heartbeat(
            Heartbeat(
                agent_id=self._config.agent_id,
                created_at=utc_now_iso(),
                at_ms=now_ms,
                version=agent_version(),
                slots=self.slot_records(),
                queued_seen=self.queued_seen,
                draining=self.draining,
                endpoint=self.endpoint,
                ttl=now_ms // 1000 + 7 * 86_400,
            )
        )
        self._fleet = self._store.list_heartbeats()
