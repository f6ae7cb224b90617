"""The dispatcher: the records table's stream nudges the agent when a job enters the queue.

A nudge is an optimisation, never the source of truth: the job is already in the table, and the agent's
periodic sweep takes anything a lost nudge missed. So failures are logged, not retried.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import urllib3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_src import aws_clients
from lambda_src.settings import DispatchSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aipm-dispatch"))
_http = urllib3.PoolManager(retries=False)


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


def nudge(job: dict[str, Any]) -> bool:
    """POST the job to the agent's /api/process-pr. True if the agent accepted it; never raises."""
    cfg = settings()
    try:
        endpoint = aws_clients.ssm_parameter(cfg.agent_endpoint_param).rstrip("/")
        token = aws_clients.secret_token(cfg.agent_token_secret_id)
        resp = _http.request(
            "POST",
            f"{endpoint}/api/process-pr",
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
    log("nudged agent", extra={"job_id": job["jobId"], "status": resp.status})
    return accepted


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, int]:
    jobs = queued_jobs(event)
    accepted = sum(nudge(job) for job in jobs)
    return {"queued": len(jobs), "nudged": accepted}
