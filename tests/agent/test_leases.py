"""Lease ownership per claim, against a real moto DynamoDB server: a run that was cancelled, then retried and
claimed again on the same slot, must not carry on under the new claim (CI once recorded the cancelled run's
`committing`/`pushed`/`completed` in the retry's timeline, with no `preparing` or `generating`)."""

from __future__ import annotations

import pytest

from ec2_agent.runner import JobRunner, RunnerConfig
from lambda_src.records.models import JobStatus
from lambda_src.records.store import JobStore, LeaseLost
from tests.factories import make_job


@pytest.fixture
def store(ddb, records_table: str) -> JobStore:
    return JobStore(records_table, ddb)


def test_a_cancelled_run_cannot_act_under_its_retrys_claim_on_the_same_slot(store: JobStore) -> None:
    runner = JobRunner(store, github=None, config=RunnerConfig("agent-a", lease_s=60, job_timeout_s=60))  # type: ignore[arg-type]
    job, pr = make_job()
    store.create_delegation(job, pr)
    first = store.claim(job.job_id, runner.lease_owner(0), lease_s=60)
    assert first is not None
    old = runner.hold(first)
    try:
        store.advance(job.job_id, old.worker, JobStatus.PREPARING)
        store.cancel(job.job_id, by="tester")
        store.retry(job.job_id, by="tester")
        second = store.claim(job.job_id, runner.lease_owner(0), lease_s=60)  # the same slot claims it again
        assert second is not None and second.lease_owner != old.worker
        assert second.lease_owner is not None and second.lease_owner.startswith("agent-a/slot-0/")

        for step in (JobStatus.GENERATING, JobStatus.COMMITTING):
            with pytest.raises(LeaseLost):
                store.advance(job.job_id, old.worker, step)
        with pytest.raises(LeaseLost):
            store.renew(job.job_id, old.worker, 60)
        store.advance(job.job_id, second.lease_owner, JobStatus.PREPARING)
        steps = [e.step for e in store.get_job(job.job_id).timeline]
        assert steps[steps.index("retried") :] == ["retried", "claimed", "preparing"]
    finally:
        old.keeper.stop()


def test_holding_an_unclaimed_job_is_refused(store: JobStore) -> None:
    runner = JobRunner(store, github=None, config=RunnerConfig("agent-a", lease_s=60, job_timeout_s=60))  # type: ignore[arg-type]
    job, _ = make_job()
    with pytest.raises(ValueError, match="not claimed"):
        runner.hold(job)
