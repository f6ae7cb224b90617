"""The dispatcher: the records table's stream nudges an agent when a job enters the queue.

It nudges the agents whose fresh heartbeats show a free slot (spreading a batch over their free slots),
and falls back to the endpoint in the SSM parameter. The nudge carries the agent token, so it goes only to
endpoints the dispatcher can verify: the SSM parameter (written by the deployment), and heartbeat items in
the agents' own key space (`AGENT#<id>`/`HEARTBEAT`, which only the agent role may write: an IAM
leading-key condition) whose endpoint is a bare `http://<IP>:<port>` of the same address class as the
parameter's (loopback only when the parameter is loopback, as in local mode; never link-local — the
instance metadata service —, multicast, unspecified or reserved). A URL from any other record is never
called. A nudge is an optimisation, never the source of truth:
the job is already in the table, and the agents' sweeps take anything a lost nudge missed. So failures are
logged, and the next target is tried once.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import urllib3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambda_src import aws_clients
from lambda_src.records.models import Heartbeat
from lambda_src.records.store import JobStore
from lambda_src.settings import DispatchSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aipm-dispatch"))
_http = urllib3.PoolManager(retries=False)
HEARTBEAT_CACHE_S = 2.0


@cache
def settings() -> DispatchSettings:
    return DispatchSettings.from_env()


def queued_jobs(event: DynamoDBStreamEvent) -> list[dict[str, Any]]:
    """The jobs that entered the queue in this batch (new jobs, retries, requeues)."""
    found = []
    for record in event.records:
        if record.event_name not in (DynamoDBRecordEventName.INSERT, DynamoDBRecordEventName.MODIFY):
            continue
        ddb = record.dynamodb
        new = (ddb.new_image if ddb else None) or {}
        old = (ddb.old_image if ddb else None) or {}
        if new.get("kind") == "job" and new.get("status") == "queued" and old.get("status") != "queued":
            found.append(new)
    return found


def _address(endpoint: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a bare `http(s)://<IP literal>:<port>` endpoint; None for anything else (names, user
    info, paths, queries, fragments, a missing port)."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.username or parts.password or port is None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return address


def verified_endpoint(endpoint: str, anchor: str) -> bool:
    """True if a heartbeat's `endpoint` may receive a nudge, judged against `anchor` (the SSM parameter's
    endpoint): a bare IP endpoint, of the anchor's class (loopback, or private), never link-local,
    multicast, unspecified or reserved."""
    address, trusted = _address(endpoint), _address(anchor)
    if address is None or trusted is None:
        return False
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return False
    if address.is_loopback or trusted.is_loopback:
        return address.is_loopback and trusted.is_loopback
    return address.is_private


def targets() -> list[str]:
    """Agent endpoints to nudge, one entry per free slot (agents with the most free slots first), from
    fresh, verified heartbeats; else the endpoint in the SSM parameter. Never raises for a heartbeat read;
    without the parameter nothing is nudged (no heartbeat can be verified)."""
    cfg = settings()
    try:
        anchor = aws_clients.ssm_parameter(cfg.agent_endpoint_param)
    except aws_clients.SecretUnavailable as err:
        logger.warning("no agent endpoint to nudge", extra={"error": str(err)})
        return []
    free: list[str] = []
    if cfg.records_table:
        beats = heartbeats.get(cfg.records_table)
        now_ms = time.time_ns() // 1_000_000
        fresh = [b for b in beats if b.endpoint and now_ms - b.at_ms <= cfg.worker_stale_s * 1000]
        for beat in sorted(fresh, key=lambda b: -b.free_slots):
            if not verified_endpoint(str(beat.endpoint), anchor):
                logger.warning(
                    "heartbeat endpoint refused", extra={"agent_id": beat.agent_id, "endpoint": beat.endpoint}
                )
                continue
            free.extend([str(beat.endpoint)] * beat.free_slots)
    return free or [anchor]


@dataclass
class HeartbeatCache:
    """The agents' heartbeats, read at most every `max_age_s` per container: agents write theirs every 15 s,
    and a burst of stream batches need not read them each time."""

    max_age_s: float
    read_at: float = float("-inf")
    beats: list[Heartbeat] = field(default_factory=list)

    def get(self, table: str) -> list[Heartbeat]:
        """The cached heartbeats, re-read when older than max_age_s; empty if they cannot be read."""
        if time.monotonic() - self.read_at < self.max_age_s:
            return self.beats
        try:
            self.beats = JobStore(table, aws_clients.dynamodb()).list_heartbeats()
        except (ClientError, BotoCoreError) as err:
            logger.warning(
                "heartbeats unreadable; nudging the configured endpoint", extra={"error": str(err)}
            )
            self.beats = []
        self.read_at = time.monotonic()
        return self.beats


heartbeats = HeartbeatCache(max_age_s=HEARTBEAT_CACHE_S)


def nudge(job: dict[str, Any], endpoint: str) -> bool:
    """POST the job to the agent's /api/process-pr at `endpoint`. True if it accepted; never raises."""
    cfg = settings()
    try:
        token = aws_clients.secret_token(cfg.agent_token_secret_id)
        resp = _http.request(
            "POST",
            f"{endpoint.rstrip('/')}/api/process-pr",
            body=json.dumps(
                {
                    "jobId": job["jobId"],
                    "prNumber": int(job["prNumber"]),
                    "branch": job["branchName"],
                    "owner": job["owner"],
                    "repo": job["repoName"],
                }
            ).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=urllib3.Timeout(total=cfg.nudge_timeout_s),
        )
    except (
        urllib3.exceptions.HTTPError,
        OSError,
        KeyError,
        ValueError,
        aws_clients.SecretUnavailable,
    ) as err:
        logger.warning(
            "nudge failed; the agent's sweep will take the job",
            extra={"job_id": job.get("jobId"), "error": str(err)},
        )
        return False
    accepted = resp.status == 202
    log = logger.info if accepted else logger.warning
    log("nudged agent", extra={"job_id": job["jobId"], "endpoint": endpoint, "status": resp.status})
    return accepted


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, int]:
    jobs = queued_jobs(event)
    if not jobs:
        return {"queued": 0, "nudged": 0}
    plan = targets()
    accepted = 0
    for i, job in enumerate(jobs):
        candidates = plan[i % len(plan) :] + plan[: i % len(plan)] if plan else []
        accepted += any(nudge(job, endpoint) for endpoint in dict.fromkeys(candidates[:2]))
    return {"queued": len(jobs), "nudged": accepted}
