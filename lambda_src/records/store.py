"""Data-access layer for the records table (the only module in `lambda_src` that calls DynamoDB).

Every state change is one conditional write, so concurrent API calls, workers and agent hosts cannot
interleave badly: a claim succeeds for exactly one worker; a worker's later writes need its lease; an
expired lease is reclaimed by one sweeper at most.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from lambda_src.faults import checkpoint
from lambda_src.records.models import (
    ACTIVE_STATUSES,
    MAX_HAND_BACKS,
    OUTPUT_TAIL_MAX_CHARS,
    RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    DelegationIntent,
    Heartbeat,
    Job,
    JobStatus,
    PullRequestRecord,
    SavedSession,
    TimelineEntry,
    WebhookDelivery,
    utc_now_iso,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

APPEND_TIMELINE = "timeline = list_append(if_not_exists(timeline, :empty), :entry)"
STATUS_INDEX = "status-index"
REPO_INDEX = "repo-index"
KIND_INDEX = "kind-index"
MAX_PAGE_SIZE = 100

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class RecordError(Exception):
    """Base of the records layer's errors."""


class JobNotFound(RecordError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class LeaseLost(RecordError):
    """The worker no longer holds the job: it was cancelled, reclaimed after expiry, or finished elsewhere."""

    def __init__(self, job_id: str, worker: str) -> None:
        super().__init__(f"worker {worker} no longer holds the lease on job {job_id}")
        self.job_id = job_id


class InvalidTransition(RecordError):
    def __init__(self, job_id: str, action: str, status: JobStatus) -> None:
        super().__init__(f"cannot {action} job {job_id}: it is {status.value}")
        self.job_id = job_id
        self.status = status


class InvalidCursor(RecordError):
    pass


class DelegationExists(RecordError):
    """A job or PR record with this key is already stored."""


class DeliveryRecorded(RecordError):
    """This webhook delivery was acted on before (a redelivery): nothing was written."""


class RateLimited(RecordError):
    """The repository reached its limit of follow-up jobs for this hour: nothing was written."""


class PullRequestRecordMissing(RecordError):
    """The PR record a follow-up job links to does not exist (expired, or never this product's)."""


def job_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


def pr_record_key(owner: str, repo: str, number: int) -> dict[str, str]:
    return {"pk": f"PR#{owner}/{repo}#{number}", "sk": "PR"}


def saved_session_key(owner: str, repo: str, number: int, profile: str) -> dict[str, str]:
    return {"pk": f"PR#{owner}/{repo}#{number}", "sk": f"SESSION#{profile}"}


def delivery_key(delivery_id: str) -> dict[str, str]:
    return {"pk": f"DELIVERY#{delivery_id}", "sk": "DELIVERY"}


def intent_key(intent_id: str) -> dict[str, str]:
    return {"pk": f"INTENT#{intent_id}", "sk": "INTENT"}


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_storable(v)) for k, v in item.items()}


def _storable(value: Any) -> Any:
    """DynamoDB takes Decimal, not float."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; records hold ints."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    return value


def _is_condition_failure(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobStore:
    """Reads and writes jobs, PR records and heartbeats in one DynamoDB table.

    `clock_ms` returns the current epoch time in milliseconds (injectable for tests).
    Errors: JobNotFound, LeaseLost, InvalidTransition, InvalidCursor; AWS faults surface as botocore errors.
    """

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.table_name = table_name
        self._ddb = client
        self._clock_ms = clock_ms

    # -- creation and reads ---------------------------------------------------------------------------

    def create_delegation(self, job: Job, pr: PullRequestRecord) -> None:
        """Write the PR record, then the job: agents only ever see a job whose PR record exists. If the job
        cannot be written, the PR record is removed again, so on any error neither is left behind. A PR
        record left by an earlier, interrupted write of the same job is taken over (settling an intent).

        Raises DelegationExists if the job, or a PR record of another job, exists; AWS faults as botocore
        errors.
        """
        pr_key = pr_record_key(pr.owner, pr.repo_name, pr.number)
        self._put_new({**pr_key, **pr.to_item()}, same_job=job.job_id)
        checkpoint("record:pr")
        try:
            self._put_new({"pk": f"JOB#{job.job_id}", "sk": "JOB", **job.to_item()})
        except DelegationExists:
            if not self._is_job_of(job.job_id, pr):
                self._ddb.delete_item(TableName=self.table_name, Key=_serialize(pr_key))
            raise  # when it is this PR's job (an interrupted write settled again), its PR record stays
        except BaseException:
            self._ddb.delete_item(TableName=self.table_name, Key=_serialize(pr_key))
            raise
        checkpoint("record:job")

    def _is_job_of(self, job_id: str, pr: PullRequestRecord) -> bool:
        """Whether stored job `job_id` is the job of PR `pr` (same repository and number)."""
        try:
            stored = self.get_job(job_id)
        except JobNotFound:
            return False
        return (stored.owner, stored.repo_name, stored.pr_number) == (pr.owner, pr.repo_name, pr.number)

    def get_pr_record(self, owner: str, repo: str, number: int) -> PullRequestRecord | None:
        """The PR record of pull request `number` of owner/repo (strongly consistent), or None."""
        resp = self._ddb.get_item(
            TableName=self.table_name,
            Key=_serialize(pr_record_key(owner, repo, number)),
            ConsistentRead=True,
        )
        return PullRequestRecord.model_validate(_deserialize(resp["Item"])) if "Item" in resp else None

    def find_pr_records(self, *, number: int, branch: str) -> list[PullRequestRecord]:
        """PR records of any repository with this number and branch (the prototype's callers name no
        repository). Reads the kind index page by page; PR records expire with their TTL."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": KIND_INDEX,
            "KeyConditionExpression": "#kind = :kind",
            "FilterExpression": "#number = :number AND branchName = :branch",
            "ExpressionAttributeNames": {"#kind": "kind", "#number": "number"},
            "ExpressionAttributeValues": _serialize({":kind": "pr", ":number": number, ":branch": branch}),
        }
        found: list[PullRequestRecord] = []
        while True:
            resp = self._ddb.query(**query)
            found.extend(PullRequestRecord.model_validate(_deserialize(i)) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return found
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # -- webhook deliveries and follow-up jobs ---------------------------------------------------------

    def delivery_exists(self, delivery_id: str) -> bool:
        """Whether webhook delivery `delivery_id` was acted on (strongly consistent)."""
        resp = self._ddb.get_item(
            TableName=self.table_name,
            Key=_serialize(delivery_key(delivery_id)),
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in resp

    def record_delivery(self, delivery: WebhookDelivery) -> bool:
        """Record a delivery acted on; False (nothing written) if it was recorded before."""
        try:
            self._put_new({**delivery_key(delivery.delivery_id), **delivery.to_item()})
        except DelegationExists:
            return False
        return True

    def create_follow_up(
        self, job: Job, delivery: WebhookDelivery, *, per_hour: int, hour: int, ttl: int
    ) -> None:
        """Write, in one transaction, the delivery (new), the follow-up job (new), the job's id appended
        to its PR record's `followUpJobIds` (which must exist), and the repository's count of follow-ups in
        hour `hour` (epoch hours; item `RATE#<owner>/<repo>`/`HOUR#<hour>`, removed at `ttl`) raised while
        below `per_hour`: all or nothing, so a redelivery of the same delivery, or two at once, create one
        job, and a busy repository gets at most `per_hour` an hour.

        Raises DeliveryRecorded (handled before), PullRequestRecordMissing, RateLimited; AWS faults as
        botocore errors.
        """
        pr_key = pr_record_key(job.owner, job.repo_name, job.pr_number)
        new = "attribute_not_exists(pk)"
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _serialize({**delivery_key(delivery.delivery_id), **delivery.to_item()}),
                            "ConditionExpression": new,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _serialize({"pk": f"JOB#{job.job_id}", "sk": "JOB", **job.to_item()}),
                            "ConditionExpression": new,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": _serialize(pr_key),
                            "UpdateExpression": "SET followUpJobIds = "
                            "list_append(if_not_exists(followUpJobIds, :empty), :job)",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": _serialize({":empty": [], ":job": [job.job_id]}),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": _serialize(
                                {"pk": f"RATE#{job.owner}/{job.repo_name}", "sk": f"HOUR#{hour}"}
                            ),
                            "UpdateExpression": "ADD #count :one SET #ttl = :ttl",
                            "ConditionExpression": "attribute_not_exists(#count) OR #count < :max",
                            "ExpressionAttributeNames": {"#count": "count", "#ttl": "ttl"},
                            "ExpressionAttributeValues": _serialize(
                                {":one": 1, ":max": per_hour, ":ttl": ttl}
                            ),
                        }
                    },
                ]
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in err.response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise DeliveryRecorded(f"delivery {delivery.delivery_id} was handled before") from None
            if reasons[2:3] == ["ConditionalCheckFailed"]:
                raise PullRequestRecordMissing(
                    f"no PR record for {job.owner}/{job.repo_name}#{job.pr_number}"
                ) from None
            if reasons[3:4] == ["ConditionalCheckFailed"]:
                raise RateLimited(
                    f"{job.owner}/{job.repo_name} reached {per_hour} follow-ups this hour"
                ) from None
            raise
        checkpoint("record:follow-up")

    def record_notice(self, owner: str, repo: str, number: int, login: str, *, ttl: int) -> bool:
        """Note that `login` was told on PR `number` why their comment starts no job; False (nothing written)
        if they were told before, so they are told once."""
        key = {"pk": f"NOTICE#{owner}/{repo}#{number}#{login}", "sk": "NOTICE"}
        try:
            self._put_new({**key, "ttl": ttl})
        except DelegationExists:
            return False
        return True

    # -- saved CLI sessions ---------------------------------------------------------------------------

    def put_saved_session(self, owner: str, repo: str, number: int, saved: SavedSession) -> None:
        """Keep (replace) PR `number`'s saved CLI session for `saved.profile`, beside its PR record."""
        key = saved_session_key(owner, repo, number, saved.profile)
        try:
            self._ddb.put_item(TableName=self.table_name, Item=_serialize({**key, **saved.to_item()}))
        except (ClientError, BotoCoreError) as err:
            raise RecordError(f"the saved session of PR #{number} could not be written: {err}") from err

    def delete_saved_session(self, owner: str, repo: str, number: int, profile: str) -> None:
        """Forget PR `number`'s saved CLI session for `profile` (idempotent): its conversation went on
        without being saved, or resuming it failed, so the PR's next follow-up starts a new session with
        the brief. Raises RecordError if it cannot be deleted."""
        try:
            self._ddb.delete_item(
                TableName=self.table_name, Key=_serialize(saved_session_key(owner, repo, number, profile))
            )
        except (ClientError, BotoCoreError) as err:
            raise RecordError(f"the saved session of PR #{number} could not be deleted: {err}") from err

    def get_saved_session(self, owner: str, repo: str, number: int, profile: str) -> SavedSession | None:
        """PR `number`'s saved CLI session for `profile` (strongly consistent), or None. Raises RecordError if
        it cannot be read or is malformed."""
        try:
            resp = self._ddb.get_item(
                TableName=self.table_name,
                Key=_serialize(saved_session_key(owner, repo, number, profile)),
                ConsistentRead=True,
            )
            if "Item" not in resp:
                return None
            raw = resp["Item"]
            item = _deserialize({k: v for k, v in raw.items() if k != "state"})
            return SavedSession.model_validate({**item, "state": raw.get("state", {}).get("B")})
        except (ClientError, BotoCoreError, ValidationError) as err:
            raise RecordError(f"the saved session of PR #{number} could not be read: {err}") from err

    # -- delegation intents ---------------------------------------------------------------------------

    def put_intent(self, intent: DelegationIntent) -> bool:
        """Record a new intent; False (nothing written) if one with this id exists already."""
        try:
            self._put_new({**intent_key(intent.intent_id), **intent.to_item()})
        except DelegationExists:
            return False
        checkpoint("record:intent")
        return True

    def get_intent(self, intent_id: str) -> DelegationIntent | None:
        resp = self._ddb.get_item(
            TableName=self.table_name, Key=_serialize(intent_key(intent_id)), ConsistentRead=True
        )
        return DelegationIntent.model_validate(_deserialize(resp["Item"])) if "Item" in resp else None

    def add_intent_branch(self, intent_id: str, branch: str) -> None:
        """Note another branch name tried for a pending intent (before that branch is created)."""
        self._ddb.update_item(
            TableName=self.table_name,
            Key=_serialize(intent_key(intent_id)),
            UpdateExpression="SET branches = list_append(branches, :branch)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=_serialize({":branch": [branch]}),
        )
        checkpoint("record:intent-branch")

    def complete_intent(self, intent_id: str, pr_number: int | None) -> None:
        """Mark an intent done (its job exists, or nothing was left to undo); it leaves the pending index."""
        values: dict[str, Any] = {":done": "done"}
        update = "SET #status = :done"
        if pr_number is not None:
            update += ", prNumber = :number"
            values[":number"] = pr_number
        self._ddb.update_item(
            TableName=self.table_name,
            Key=_serialize(intent_key(intent_id)),
            UpdateExpression=update + " REMOVE #kind",
            ExpressionAttributeNames={"#status": "status", "#kind": "kind"},
            ExpressionAttributeValues=_serialize(values),
        )
        checkpoint("record:intent-done")

    def delete_intent(self, intent_id: str) -> None:
        """Remove an intent whose delegation left nothing behind (the Idempotency-Key is free again)."""
        self._ddb.delete_item(TableName=self.table_name, Key=_serialize(intent_key(intent_id)))

    def pending_intents(self, *, older_than_ms: int) -> list[DelegationIntent]:
        """Pending intents created before `older_than_ms` (epoch ms), oldest first."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": KIND_INDEX,
            "KeyConditionExpression": "#kind = :kind",
            "FilterExpression": "createdAtMs < :before",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": _serialize({":kind": "intent", ":before": older_than_ms}),
            "ScanIndexForward": True,
        }
        found: list[DelegationIntent] = []
        while True:
            resp = self._ddb.query(**query)
            found.extend(DelegationIntent.model_validate(_deserialize(i)) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return found
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def job_exists(self, job_id: str) -> bool:
        resp = self._ddb.get_item(
            TableName=self.table_name, Key=job_key(job_id), ConsistentRead=True, ProjectionExpression="pk"
        )
        return "Item" in resp

    def _put_new(self, item: Mapping[str, Any], *, same_job: str | None = None) -> None:
        """Put an item that must not exist yet (or, with `same_job`, may exist for that job id)."""
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if same_job is not None:
            condition = {
                "ConditionExpression": "attribute_not_exists(pk) OR jobId = :job",
                "ExpressionAttributeValues": {":job": {"S": same_job}},
            }
        try:
            self._ddb.put_item(TableName=self.table_name, Item=_serialize(item), **condition)
        except ClientError as err:
            if _is_condition_failure(err):
                raise DelegationExists(f"{item['pk']} already exists") from None
            raise

    def get_job(self, job_id: str) -> Job:
        """The job as last written (strongly consistent). Raises JobNotFound."""
        resp = self._ddb.get_item(TableName=self.table_name, Key=job_key(job_id), ConsistentRead=True)
        if "Item" not in resp:
            raise JobNotFound(job_id)
        return Job.model_validate(_deserialize(resp["Item"]))

    def follow_ups_of(self, job: Job) -> list[Job]:
        """The follow-up jobs of `job`'s PR, oldest first, when `job` is the PR's first job (the one its PR
        record names); [] for any other job (a follow-up names its parent in `followUp.parentJobId`).
        Reads the PR record and the jobs (BatchGetItem, strongly consistent, 100 keys a call, unprocessed
        keys asked again); a listed job that is gone is left out."""
        if job.follow_up is not None:
            return []
        pr = self.get_pr_record(job.owner, job.repo_name, job.pr_number)
        if pr is None or pr.job_id != job.job_id or not pr.follow_up_job_ids:
            return []
        found: dict[str, Job] = {}
        ids = list(dict.fromkeys(pr.follow_up_job_ids))
        for start in range(0, len(ids), 100):
            keys: list[dict[str, Any]] = [job_key(job_id) for job_id in ids[start : start + 100]]
            while keys:
                resp = self._ddb.batch_get_item(
                    RequestItems={self.table_name: {"Keys": keys, "ConsistentRead": True}}
                )
                for item in resp.get("Responses", {}).get(self.table_name, []):
                    follow_up = Job.model_validate(_deserialize(item))
                    found[follow_up.job_id] = follow_up
                unprocessed = resp.get("UnprocessedKeys", {})
                keys = list(unprocessed[self.table_name]["Keys"]) if self.table_name in unprocessed else []
        return [found[job_id] for job_id in ids if job_id in found]

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        repo: str | None = None,
        limit: int = 25,
        cursor: str | None = None,
        oldest_first: bool = False,
        requester_id: str | None = None,
        requester_name: str | None = None,
    ) -> JobPage:
        """Jobs newest first (or oldest first), filtered by status and/or repo, one page at a time.

        `requester_id`: only jobs that belong to this identity (a filter on the index the listing reads);
        jobs recorded before they carried `requesterId` match by `requester_name` (their `requestedBy`).
        `cursor` is the opaque `next_cursor` of the previous page. Raises InvalidCursor.
        """
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        filters: list[str] = []
        if status is not None and repo is not None:
            index, key_cond = REPO_INDEX, "#repo = :repo"
            names["#repo"], values[":repo"] = "repo", {"S": repo}
            filters.append("#status = :status")
            names["#status"], values[":status"] = "status", {"S": status.value}
        elif status is not None:
            index, key_cond = STATUS_INDEX, "#status = :status"
            names["#status"], values[":status"] = "status", {"S": status.value}
        elif repo is not None:
            index, key_cond = REPO_INDEX, "#repo = :repo"
            names["#repo"], values[":repo"] = "repo", {"S": repo}
        else:
            index, key_cond = KIND_INDEX, "#kind = :kind"
            names["#kind"], values[":kind"] = "kind", {"S": "job"}
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": key_cond,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": oldest_first,
            "Limit": limit,
        }
        if requester_id is not None:
            filters.append(
                "(requesterId = :requester OR (attribute_not_exists(requesterId) AND requestedBy = :name))"
            )
            values[":requester"] = {"S": requester_id}
            values[":name"] = {"S": requester_name or requester_id}
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor)
        jobs: list[Job] = []
        while True:
            resp = self._ddb.query(**query)
            jobs.extend(Job.model_validate(_deserialize(i)) for i in resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last or len(jobs) >= limit:
                break
            query["ExclusiveStartKey"] = last
            query["Limit"] = limit - len(jobs)
        next_cursor = _encode_cursor(last) if last else None
        return JobPage(jobs=jobs[:limit], next_cursor=next_cursor)

    def oldest_queued(self, limit: int = 10) -> list[Job]:
        """The oldest queued jobs, oldest first (eventually consistent: a claim re-checks)."""
        return self.list_jobs(status=JobStatus.QUEUED, limit=limit, oldest_first=True).jobs

    def count_queued(self) -> int:
        resp = self._ddb.query(
            TableName=self.table_name,
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": JobStatus.QUEUED.value}},
            Select="COUNT",
        )
        return int(resp.get("Count", 0))

    # -- worker side: claim, lease, progress, finish ------------------------------------------------

    def claim(self, job_id: str, worker: str, lease_s: float) -> Job | None:
        """Take a queued job for `worker` under a lease; None if someone else has it or it is not queued."""
        now = self._clock_ms()
        try:
            resp = self._ddb.update_item(
                TableName=self.table_name,
                Key=job_key(job_id),
                UpdateExpression=(
                    "SET #status = :claimed, leaseOwner = :me, leaseExpiresAtMs = :exp, updatedAt = :now, "
                    "attempts = if_not_exists(attempts, :zero) + :one, " + APPEND_TIMELINE
                ),
                ConditionExpression="#status = :queued AND attempts < maxAttempts",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_serialize(
                    {
                        ":claimed": JobStatus.CLAIMED.value,
                        ":queued": JobStatus.QUEUED.value,
                        ":me": worker,
                        ":exp": now + int(lease_s * 1000),
                        ":now": utc_now_iso(),
                        ":zero": 0,
                        ":one": 1,
                        ":empty": [],
                        ":entry": [_entry(JobStatus.CLAIMED.value, f"by {worker}")],
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if _is_condition_failure(err):
                return None
            raise
        return Job.model_validate(_deserialize(resp["Attributes"]))

    def renew(self, job_id: str, worker: str, lease_s: float, *, output_tail: str | None = None) -> None:
        """Extend the lease (and store the latest output tail). Raises LeaseLost if the job is not ours."""
        values: dict[str, Any] = {
            ":me": worker,
            ":exp": self._clock_ms() + int(lease_s * 1000),
            ":now": utc_now_iso(),
            **_active_values(),
        }
        update = "SET leaseExpiresAtMs = :exp, updatedAt = :now"
        if output_tail is not None:
            update += ", outputTail = :tail"
            values[":tail"] = output_tail[-OUTPUT_TAIL_MAX_CHARS:]
        self._worker_update(job_id, worker, update, values)

    def advance(self, job_id: str, worker: str, to: JobStatus, detail: str = "", **fields: Any) -> None:
        """Move a job we hold to the next active status, with a timeline entry. Raises LeaseLost."""
        if not to.active:
            raise ValueError(f"{to.value} is not an active status; use finish()")
        self._transition(job_id, worker, to, detail, fields, remove_lease=False)

    def finish(self, job_id: str, worker: str, to: JobStatus, reason: str, **fields: Any) -> None:
        """End a job we hold in a terminal status with its reason; releases the lease. Raises LeaseLost."""
        if not to.terminal:
            raise ValueError(f"{to.value} is not a terminal status")
        self._transition(job_id, worker, to, reason, {"reason": reason, **fields}, remove_lease=True)

    def release(self, job_id: str, worker: str, reason: str, *, counted: bool = True) -> JobStatus:
        """Hand a job we hold back to the queue (or fail it when its attempts are used up).

        `counted=False` is a hand-back that is not the job's fault (the agent is stopping, or a fault of the
        slot's own workspace or sandbox): the attempt its claim took is given back (`attempts` - 1,
        `handBacks` + 1), so it never fails the job. After MAX_HAND_BACKS such hand-backs a hand-back counts
        again. Returns the status the job ended in. Raises LeaseLost.
        """
        job = self.get_job(job_id)
        uncounted = not counted and job.hand_backs < MAX_HAND_BACKS
        if not uncounted and job.attempts >= job.max_attempts:
            self.finish(job_id, worker, JobStatus.FAILED, f"{reason} (after {job.attempts} attempts)")
            return JobStatus.FAILED
        detail = f"{reason} (no attempt used)" if uncounted else reason
        values: dict[str, Any] = {
            ":me": worker,
            ":queued": JobStatus.QUEUED.value,
            ":now": utc_now_iso(),
            ":empty": [],
            ":entry": [_entry("requeued", detail)],
            **_active_values(),
        }
        update = f"SET #status = :queued, updatedAt = :now, {APPEND_TIMELINE}"
        if uncounted:
            update += ", attempts = attempts - :one, handBacks = if_not_exists(handBacks, :zero) + :one"
            values.update({":one": 1, ":zero": 0})
        self._worker_update(job_id, worker, f"{update} REMOVE leaseOwner, leaseExpiresAtMs", values)
        return JobStatus.QUEUED

    def _transition(
        self,
        job_id: str,
        worker: str,
        to: JobStatus,
        detail: str,
        fields: Mapping[str, Any],
        *,
        remove_lease: bool,
    ) -> None:
        values: dict[str, Any] = {
            ":me": worker,
            ":to": to.value,
            ":now": utc_now_iso(),
            ":empty": [],
            ":entry": [_entry(to.value, detail)],
            **_active_values(),
        }
        names: dict[str, str] = {}
        sets = [
            "#status = :to",
            "updatedAt = :now",
            APPEND_TIMELINE,
        ]
        for i, (name, value) in enumerate(fields.items()):
            if value is None:
                continue
            attr = _camel(name)
            names[f"#f{i}"] = attr
            sets.append(f"#f{i} = :f{i}")
            values[f":f{i}"] = value[-OUTPUT_TAIL_MAX_CHARS:] if attr == "outputTail" else value
        update = "SET " + ", ".join(sets)
        if remove_lease:
            update += " REMOVE leaseOwner, leaseExpiresAtMs"
        self._worker_update(job_id, worker, update, values, names)

    def _worker_update(
        self,
        job_id: str,
        worker: str,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> None:
        """Apply `update` to a job only while `worker` holds its lease and it is active. Raises LeaseLost."""
        condition = "leaseOwner = :me AND #status IN (" + ", ".join(_active_values()) + ")"
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key=job_key(job_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", **(names or {})},
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError as err:
            if _is_condition_failure(err):
                raise LeaseLost(job_id, worker) from None
            raise

    def requeue_expired(self) -> list[tuple[str, JobStatus]]:
        """Return every job whose lease has expired to the queue, or fail it when out of attempts.

        Safe to run from any number of agents at once: each reclaim is conditional on the lease it saw.
        Returns (job id, new status) for each job this call reclaimed.
        """
        now = self._clock_ms()
        reclaimed: list[tuple[str, JobStatus]] = []
        for status in sorted(ACTIVE_STATUSES):
            for job in self._expired_in(status, now):
                outcome = self._reclaim(job, now)
                if outcome is not None:
                    reclaimed.append((job.job_id, outcome))
        return reclaimed

    def _expired_in(self, status: JobStatus, now: int) -> Iterable[Job]:
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :status",
            "FilterExpression": "leaseExpiresAtMs < :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": _serialize({":status": status.value, ":now": now}),
        }
        while True:
            resp = self._ddb.query(**query)
            for item in resp.get("Items", []):
                yield Job.model_validate(_deserialize(item))
            if "LastEvaluatedKey" not in resp:
                return
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _reclaim(self, job: Job, now: int) -> JobStatus | None:
        exhausted = job.attempts >= job.max_attempts
        to = JobStatus.FAILED if exhausted else JobStatus.QUEUED
        reason = (
            f"lease expired after {job.attempts} attempts (worker {job.lease_owner} stopped renewing)"
            if exhausted
            else f"lease of {job.lease_owner} expired; back in the queue"
        )
        values: dict[str, Any] = {
            ":to": to.value,
            ":seen": job.status.value,
            ":owner": job.lease_owner or "",
            ":now": now,
            ":at": utc_now_iso(),
            ":empty": [],
            ":entry": [_entry("failed" if exhausted else "requeued", reason)],
        }
        update = f"SET #status = :to, updatedAt = :at, {APPEND_TIMELINE}"
        if exhausted:
            update += ", reason = :reason, #error = :reason"
            values[":reason"] = reason
        update += " REMOVE leaseOwner, leaseExpiresAtMs"
        names = {"#status": "status"}
        if exhausted:
            names["#error"] = "error"
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key=job_key(job.job_id),
                UpdateExpression=update,
                ConditionExpression="#status = :seen AND leaseOwner = :owner AND leaseExpiresAtMs < :now",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError as err:
            if _is_condition_failure(err):
                return None
            raise
        return to

    # -- user side: cancel and retry --------------------------------------------------------------

    def cancel(self, job_id: str, by: str) -> Job:
        """Cancel a job that has not ended. A running worker sees it at its next lease renewal.

        Raises JobNotFound, InvalidTransition (already ended).
        """
        values = {
            ":cancelled": JobStatus.CANCELLED.value,
            ":now": utc_now_iso(),
            ":reason": f"cancelled by {by}",
            ":empty": [],
            ":entry": [_entry(JobStatus.CANCELLED.value, f"by {by}")],
            **{f":t{i}": s.value for i, s in enumerate(sorted(TERMINAL_STATUSES))},
        }
        terminal = ", ".join(f":t{i}" for i in range(len(TERMINAL_STATUSES)))
        return self._user_update(
            job_id,
            "cancel",
            f"SET #status = :cancelled, updatedAt = :now, reason = :reason, {APPEND_TIMELINE} "
            "REMOVE leaseOwner, leaseExpiresAtMs",
            f"attribute_exists(pk) AND NOT (#status IN ({terminal}))",
            values,
        )

    def retry(self, job_id: str, by: str) -> Job:
        """Queue an ended, unsuccessful job again, attempts reset. Raises JobNotFound, InvalidTransition."""
        values = {
            ":queued": JobStatus.QUEUED.value,
            ":now": utc_now_iso(),
            ":zero": 0,
            ":empty": [],
            ":entry": [_entry("retried", f"by {by}")],
            **{f":r{i}": s.value for i, s in enumerate(sorted(RETRYABLE_STATUSES))},
        }
        retryable = ", ".join(f":r{i}" for i in range(len(RETRYABLE_STATUSES)))
        return self._user_update(
            job_id,
            "retry",
            "SET #status = :queued, updatedAt = :now, attempts = :zero, handBacks = :zero, "
            f"{APPEND_TIMELINE} REMOVE reason, #error",
            f"attribute_exists(pk) AND #status IN ({retryable})",
            values,
            extra_names={"#error": "error"},
        )

    def _user_update(
        self,
        job_id: str,
        action: str,
        update: str,
        condition: str,
        values: Mapping[str, Any],
        *,
        extra_names: Mapping[str, str] | None = None,
    ) -> Job:
        try:
            resp = self._ddb.update_item(
                TableName=self.table_name,
                Key=job_key(job_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", **(extra_names or {})},
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if not _is_condition_failure(err):
                raise
            old: Mapping[str, Any] | None = err.response.get("Item")  # type: ignore[assignment]
            if not old:
                raise JobNotFound(job_id) from None
            raise InvalidTransition(job_id, action, JobStatus(_deserialize(old)["status"])) from None
        return Job.model_validate(_deserialize(resp["Attributes"]))

    # -- heartbeats -----------------------------------------------------------------------------------

    def put_heartbeat(self, heartbeat: Heartbeat) -> None:
        item = {"pk": f"AGENT#{heartbeat.agent_id}", "sk": "HEARTBEAT", **heartbeat.to_item()}
        self._ddb.put_item(TableName=self.table_name, Item=_serialize(item))

    def list_heartbeats(self, limit: int = 50) -> list[Heartbeat]:
        """The agents' heartbeats, newest first; items outside the agents' key space are ignored."""
        resp = self._ddb.query(
            TableName=self.table_name,
            IndexName=KIND_INDEX,
            KeyConditionExpression="#kind = :kind",
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues={":kind": {"S": "heartbeat"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        items = [_deserialize(i) for i in resp.get("Items", [])]
        # Only items in the agents' own key space count (pk AGENT#<its id>, sk HEARTBEAT: the keys the agent
        # role may write under its IAM leading-key condition); a heartbeat-shaped item elsewhere is forged.
        return [
            Heartbeat.model_validate(i)
            for i in items
            if i.get("sk") == "HEARTBEAT" and i.get("pk") == f"AGENT#{i.get('agentId')}"
        ]


def _entry(step: str, detail: str) -> dict[str, Any]:
    return TimelineEntry(step=step, at=utc_now_iso(), detail=detail).to_item()


def _active_values() -> dict[str, str]:
    return {f":a{i}": s.value for i, s in enumerate(sorted(ACTIVE_STATUSES))}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _encode_cursor(key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


_CURSOR_KEYS = frozenset({"pk", "sk", "status", "repo", "kind", "createdAt"})


def _decode_cursor(cursor: str) -> dict[str, Any]:
    """The LastEvaluatedKey a page handed out. Raises InvalidCursor for anything else (DynamoDB would
    answer a malformed start key with a server error)."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, json.JSONDecodeError) as err:
        raise InvalidCursor("cursor is not one this API issued") from err
    well_formed = (
        isinstance(decoded, dict)
        and {"pk", "sk"} <= decoded.keys() <= _CURSOR_KEYS
        and all(
            isinstance(v, dict) and list(v) == ["S"] and isinstance(v["S"], str) for v in decoded.values()
        )
    )
    if not well_formed:
        raise InvalidCursor("cursor is not one this API issued")
    return dict(decoded)
