"""A hypothesis state machine: claim / renew / advance / finish / cancel / expire / retry against the real
records table on the moto server, checked against a small model of what must be true."""

from __future__ import annotations

import uuid
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aipm.local.bootstrap import create_records_table
from lambda_src.records.models import ACTIVE_STATUSES, MAX_HAND_BACKS, JobStatus
from lambda_src.records.store import InvalidTransition, JobStore, LeaseLost
from tests.factories import make_job

WORKERS = st.sampled_from(["a/slot-1", "a/slot-2", "b/slot-1"])
LEASE_S = 10
MAX_ATTEMPTS = 3


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def claim_machine(ddb: Any) -> type[RuleBasedStateMachine]:
    class ClaimMachine(RuleBasedStateMachine):
        @initialize()
        def new_job(self) -> None:
            table = f"records-sm-{uuid.uuid4().hex[:8]}"
            create_records_table(ddb, table)
            self.clock = Clock()
            self.store = JobStore(table, ddb, clock_ms=self.clock)
            job, pr = make_job(max_attempts=MAX_ATTEMPTS)
            self.store.create_delegation(job, pr)
            self.job_id = job.job_id
            self.status = JobStatus.QUEUED
            self.owner: str | None = None
            self.attempts = 0
            self.hand_backs = 0
            self.expires_ms = 0

        def _holds(self, worker: str) -> bool:
            return self.owner == worker and self.status in ACTIVE_STATUSES

        @rule(worker=WORKERS)
        def claim(self, worker: str) -> None:
            got = self.store.claim(self.job_id, worker, LEASE_S)
            expected = self.status is JobStatus.QUEUED and self.attempts < MAX_ATTEMPTS
            assert (got is not None) == expected
            if got is not None:
                self.status, self.owner, self.attempts = JobStatus.CLAIMED, worker, self.attempts + 1
                self.expires_ms = self.clock.ms + LEASE_S * 1000

        @rule(worker=WORKERS)
        def renew(self, worker: str) -> None:
            try:
                self.store.renew(self.job_id, worker, LEASE_S)
                assert self._holds(worker)
                self.expires_ms = self.clock.ms + LEASE_S * 1000
            except LeaseLost:
                assert not self._holds(worker)

        @rule(worker=WORKERS, to=st.sampled_from(sorted(ACTIVE_STATUSES - {JobStatus.CLAIMED})))
        def advance(self, worker: str, to: JobStatus) -> None:
            try:
                self.store.advance(self.job_id, worker, to)
                assert self._holds(worker)
                self.status = to
            except LeaseLost:
                assert not self._holds(worker)

        @rule(
            worker=WORKERS,
            to=st.sampled_from(
                [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.NO_CHANGES, JobStatus.TIMED_OUT]
            ),
        )
        def finish(self, worker: str, to: JobStatus) -> None:
            try:
                self.store.finish(self.job_id, worker, to, "done")
                assert self._holds(worker)
                self.status, self.owner = to, None
            except LeaseLost:
                assert not self._holds(worker)

        @rule(worker=WORKERS, counted=st.booleans())
        def release(self, worker: str, counted: bool) -> None:
            try:
                ended = self.store.release(self.job_id, worker, "handing back", counted=counted)
                assert self._holds(worker)
                if not counted and self.hand_backs < MAX_HAND_BACKS:
                    self.status, self.attempts = JobStatus.QUEUED, self.attempts - 1
                    self.hand_backs += 1
                else:
                    self.status = JobStatus.FAILED if self.attempts >= MAX_ATTEMPTS else JobStatus.QUEUED
                assert ended is self.status
                self.owner = None
            except LeaseLost:
                assert not self._holds(worker)

        @rule()
        def cancel(self) -> None:
            try:
                self.store.cancel(self.job_id, "user")
                assert not self.status.terminal
                self.status, self.owner = JobStatus.CANCELLED, None
            except InvalidTransition:
                assert self.status.terminal

        @rule()
        def retry(self) -> None:
            try:
                self.store.retry(self.job_id, "user")
                assert self.status.terminal and self.status is not JobStatus.COMPLETED
                self.status, self.attempts, self.hand_backs = JobStatus.QUEUED, 0, 0
            except InvalidTransition:
                assert not (self.status.terminal and self.status is not JobStatus.COMPLETED)

        @rule(seconds=st.integers(min_value=1, max_value=2 * LEASE_S))
        def time_passes_and_sweep(self, seconds: int) -> None:
            self.clock.ms += seconds * 1000
            reclaimed = self.store.requeue_expired()
            if self.status in ACTIVE_STATUSES and self.clock.ms > self.expires_ms:
                to = JobStatus.FAILED if self.attempts >= MAX_ATTEMPTS else JobStatus.QUEUED
                assert reclaimed == [(self.job_id, to)]
                self.status, self.owner = to, None
            else:
                assert reclaimed == []

        @invariant()
        def table_matches_model(self) -> None:
            if not hasattr(self, "job_id"):
                return
            job = self.store.get_job(self.job_id)
            assert job.status is self.status
            assert job.lease_owner == (self.owner if self.status in ACTIVE_STATUSES else None)
            assert job.attempts == self.attempts <= MAX_ATTEMPTS
            assert job.hand_backs == self.hand_backs <= MAX_HAND_BACKS
            assert [e.step for e in job.timeline][-1:] != [] or self.status is JobStatus.QUEUED

    return ClaimMachine


def test_claims_leases_and_transitions_follow_the_model(ddb: Any) -> None:
    machine = claim_machine(ddb)
    machine.TestCase.settings = settings(
        max_examples=50, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    machine.TestCase().runTest()
