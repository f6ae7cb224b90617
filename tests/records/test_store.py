"""The records layer against a real moto DynamoDB server: claims, leases, transitions, paging."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from lambda_src.records.models import (
    MAX_HAND_BACKS,
    Heartbeat,
    JobStatus,
    SavedSession,
    SlotState,
    utc_now_iso,
)
from lambda_src.records.store import (
    DelegationExists,
    InvalidCursor,
    InvalidTransition,
    JobNotFound,
    JobStore,
    LeaseLost,
)
from tests.factories import make_job


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(ddb, records_table: str, clock: FakeClock) -> JobStore:
    return JobStore(records_table, ddb, clock_ms=clock)


def test_create_writes_job_and_pr_and_refuses_duplicates(store: JobStore, ddb, records_table: str) -> None:
    job, pr = make_job()
    store.create_delegation(job, pr)
    assert store.get_job(job.job_id).status is JobStatus.QUEUED
    with pytest.raises(DelegationExists):
        store.create_delegation(job, pr)
    other_job, _ = make_job()
    with pytest.raises(DelegationExists):  # same PR, new job: refused, and the new job is not written
        store.create_delegation(other_job, pr)
    with pytest.raises(JobNotFound):
        store.get_job(other_job.job_id)
    assert ddb.scan(TableName=records_table, Select="COUNT")["Count"] == 2


def test_a_job_that_cannot_be_written_leaves_no_pr_record(store: JobStore, ddb, records_table: str) -> None:
    job, pr = make_job()
    existing, other_pr = make_job()
    store.create_delegation(existing, other_pr)
    clash = job.model_copy(update={"job_id": existing.job_id})
    with pytest.raises(DelegationExists):
        store.create_delegation(clash, pr)
    assert ddb.scan(TableName=records_table, Select="COUNT")["Count"] == 2  # only the first delegation


def test_missing_job_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get_job("nope")


def test_exactly_one_of_many_concurrent_claims_wins(store: JobStore) -> None:
    for _ in range(25):  # a race: repeat it
        job, pr = make_job()
        store.create_delegation(job, pr)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda w, j=job.job_id: store.claim(j, f"w{w}", 30), range(8)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
    claimed = winners[0]
    assert claimed.status is JobStatus.CLAIMED
    assert claimed.attempts == 1
    assert [e.step for e in claimed.timeline] == ["claimed"]


def test_worker_writes_need_the_lease(store: JobStore) -> None:
    job, pr = make_job()
    store.create_delegation(job, pr)
    store.claim(job.job_id, "w1", 30)
    store.advance(job.job_id, "w1", JobStatus.PREPARING, "checkout")
    with pytest.raises(LeaseLost):
        store.advance(job.job_id, "w2", JobStatus.GENERATING)
    store.renew(job.job_id, "w1", 30, output_tail="x" * 20_000)
    assert len(store.get_job(job.job_id).output_tail or "") == 8 * 1024
    store.finish(
        job.job_id, "w1", JobStatus.COMPLETED, "pushed abc", commit_sha="abc", changed_files=["a.py"]
    )
    done = store.get_job(job.job_id)
    assert done.status is JobStatus.COMPLETED
    assert done.commit_sha == "abc"
    assert done.changed_files == ["a.py"]
    assert done.lease_owner is None
    assert [e.step for e in done.timeline] == ["claimed", "preparing", "completed"]
    with pytest.raises(LeaseLost):
        store.renew(job.job_id, "w1", 30)


def test_cancel_takes_the_lease_away(store: JobStore) -> None:
    job, pr = make_job()
    store.create_delegation(job, pr)
    store.claim(job.job_id, "w1", 30)
    cancelled = store.cancel(job.job_id, "alice")
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.reason == "cancelled by alice"
    with pytest.raises(LeaseLost):
        store.renew(job.job_id, "w1", 30)
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        store.cancel(job.job_id, "alice")
    with pytest.raises(JobNotFound):
        store.cancel("missing", "alice")


def test_expired_lease_requeues_then_fails_after_max_attempts(store: JobStore, clock: FakeClock) -> None:
    job, pr = make_job(max_attempts=2)
    store.create_delegation(job, pr)
    for attempt in (1, 2):
        assert store.claim(job.job_id, f"w{attempt}", 10) is not None
        assert store.requeue_expired() == []
        clock.ms += 11_000
        expected = JobStatus.QUEUED if attempt == 1 else JobStatus.FAILED
        assert store.requeue_expired() == [(job.job_id, expected)]
    failed = store.get_job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert "lease expired after 2 attempts" in (failed.reason or "")
    assert store.claim(job.job_id, "w3", 10) is None


def test_retry_requeues_with_fresh_attempts(store: JobStore) -> None:
    job, pr = make_job(max_attempts=1)
    store.create_delegation(job, pr)
    store.claim(job.job_id, "w1", 10)
    with pytest.raises(InvalidTransition):
        store.retry(job.job_id, "bob")
    store.finish(job.job_id, "w1", JobStatus.FAILED, "boom", error="boom")
    retried = store.retry(job.job_id, "bob")
    assert retried.status is JobStatus.QUEUED
    assert retried.attempts == 0
    assert retried.error is None
    assert store.claim(job.job_id, "w2", 10) is not None


def test_release_hands_back_or_fails(store: JobStore) -> None:
    job, pr = make_job(max_attempts=2)
    store.create_delegation(job, pr)
    store.claim(job.job_id, "w1", 10)
    assert store.release(job.job_id, "w1", "agent shutting down") is JobStatus.QUEUED
    store.claim(job.job_id, "w2", 10)
    assert store.release(job.job_id, "w2", "agent shutting down") is JobStatus.FAILED


def test_an_uncounted_hand_back_gives_the_attempt_back(store: JobStore) -> None:
    job, pr = make_job(max_attempts=1)
    store.create_delegation(job, pr)
    for n in range(1, 4):  # more hand-backs than attempts: none of them fails the job
        claimed = store.claim(job.job_id, f"w{n}", 10)
        assert claimed is not None and claimed.attempts == 1
        assert store.release(job.job_id, f"w{n}", "agent stopping", counted=False) is JobStatus.QUEUED
        stored = store.get_job(job.job_id)
        assert (stored.attempts, stored.hand_backs) == (0, n)
        assert stored.timeline[-1].detail == "agent stopping (no attempt used)"
    store.claim(job.job_id, "w9", 10)
    assert store.release(job.job_id, "w9", "the CLI crashed") is JobStatus.FAILED
    failed = store.get_job(job.job_id)
    assert failed.reason == "the CLI crashed (after 1 attempts)"
    assert store.retry(failed.job_id, "bob").hand_backs == 0


def test_hand_backs_past_the_cap_count_again(store: JobStore) -> None:
    job, pr = make_job(max_attempts=2)
    store.create_delegation(job, pr)
    for n in range(MAX_HAND_BACKS):
        store.claim(job.job_id, "w", 10)
        store.release(job.job_id, "w", f"slot fault {n}", counted=False)
    store.claim(job.job_id, "w", 10)
    assert store.release(job.job_id, "w", "slot fault again", counted=False) is JobStatus.QUEUED
    stored = store.get_job(job.job_id)
    assert (stored.attempts, stored.hand_backs) == (1, MAX_HAND_BACKS)
    store.claim(job.job_id, "w", 10)
    assert store.release(job.job_id, "w", "slot fault again", counted=False) is JobStatus.FAILED


def test_listing_filters_pages_and_orders(store: JobStore) -> None:
    ids = []
    for i in range(5):
        job, pr = make_job(repo="acme/a" if i % 2 else "acme/b")
        store.create_delegation(job, pr)
        ids.append(job.job_id)
    first = store.list_jobs(limit=2)
    assert len(first.jobs) == 2 and first.next_cursor
    rest = store.list_jobs(limit=10, cursor=first.next_cursor)
    assert [j.job_id for j in first.jobs + rest.jobs] == list(reversed(ids))
    assert {j.repo for j in store.list_jobs(repo="acme/a").jobs} == {"acme/a"}
    store.claim(ids[0], "w", 10)
    assert [j.job_id for j in store.oldest_queued()] == ids[1:]
    assert [j.job_id for j in store.list_jobs(status=JobStatus.CLAIMED, repo="acme/b").jobs] == [ids[0]]
    assert store.count_queued() == 4
    for foreign in (
        "not-a-cursor",
        _cursor({"id": {"S": "x"}}),
        _cursor({"pk": {"N": "1"}, "sk": {"S": "JOB"}}),
    ):
        with pytest.raises(InvalidCursor):
            store.list_jobs(cursor=foreign)


def _cursor(key: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def test_heartbeats_round_trip(store: JobStore) -> None:
    hb = Heartbeat(
        agent_id="host-1",
        created_at=utc_now_iso(),
        at_ms=1,
        version="0.1.0",
        slots=[
            SlotState(id=1, busy=True, ready=True, current_job="j1"),
            SlotState(id=2, busy=False, ready=True),
        ],
    )
    store.put_heartbeat(hb)
    store.put_heartbeat(hb.model_copy(update={"at_ms": 2}))
    [got] = store.list_heartbeats()
    assert got.at_ms == 2 and got.slots[0].current_job == "j1"


def test_a_saved_session_round_trips_as_binary_and_is_replaced(
    store: JobStore, ddb, records_table: str
) -> None:
    """A PR's saved CLI session: kept beside the PR record (pk PR#…, sk SESSION#<profile>), its archive
    stored as DynamoDB binary, the latest job's replacing the earlier one; other PRs and profiles apart."""
    state = bytes(range(256))
    first = SavedSession(
        profile="gemini-acp", session_id="s-1", state=state, job_id="j1", saved_at=utc_now_iso(), ttl=9
    )
    store.put_saved_session("octo", "app", 7, first)
    key = {"pk": {"S": "PR#octo/app#7"}, "sk": {"S": "SESSION#gemini-acp"}}
    raw = ddb.get_item(TableName=records_table, Key=key)
    assert raw["Item"]["state"] == {"B": state}
    assert store.get_saved_session("octo", "app", 7, "gemini-acp") == first
    later = first.model_copy(update={"session_id": "s-2", "job_id": "j2"})
    store.put_saved_session("octo", "app", 7, later)
    assert store.get_saved_session("octo", "app", 7, "gemini-acp") == later
    assert store.get_saved_session("octo", "app", 8, "gemini-acp") is None
    assert store.get_saved_session("octo", "app", 7, "qwen-acp") is None
    store.put_saved_session("octo", "app", 8, later)
    store.delete_saved_session("octo", "app", 7, "gemini-acp")
    store.delete_saved_session("octo", "app", 7, "gemini-acp")  # idempotent
    assert store.get_saved_session("octo", "app", 7, "gemini-acp") is None
    assert store.get_saved_session("octo", "app", 8, "gemini-acp") == later  # another PR's is kept
