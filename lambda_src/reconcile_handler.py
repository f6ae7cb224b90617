"""The reconciler: finishes or undoes every delegation that stopped half-way (scheduled; EventBridge).

A delegation records its intent before its first GitHub write and marks it done once its job exists
(lambda_src.delegation). An intent still pending after RECONCILE_GRACE_S (longer than the API Lambda's
timeout, so no request that could still finish it is running) was stopped half-way: `settle` finishes it
(the open PR gets its job) or undoes it (branches without a PR are deleted; a second PR is closed with a
comment). Each intent is settled on its own: one that fails (GitHub or the table briefly down) is left
pending for the next run and counted. Settling is idempotent, so overlapping runs do no harm.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambda_src import aws_clients
from lambda_src.delegation import DelegationService
from lambda_src.errors import DelegationFailed
from lambda_src.github.client import GitHubClient
from lambda_src.github.credentials import GitHubCredentials
from lambda_src.github.errors import GitHubError
from lambda_src.records.store import JobStore
from lambda_src.settings import ApiSettings, ReconcileSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aipm-reconcile"))


def build_service(settings: ApiSettings) -> tuple[JobStore, DelegationService]:
    store = JobStore(settings.records_table, aws_clients.dynamodb())
    github = GitHubClient(
        settings.github_api_url,
        GitHubCredentials(
            settings.github_api_url,
            lambda: aws_clients.secret_json(settings.github_secret_id),
            timeout_s=settings.github_timeout_s,
        ),
        timeout_s=settings.github_timeout_s,
    )
    return store, DelegationService(settings, store, github)


def reconcile(store: JobStore, service: DelegationService, *, grace_s: float) -> dict[str, int]:
    """Settle every intent pending for longer than `grace_s`. Returns counts: seen, finished (a PR got
    its job), undone (nothing kept), closed (duplicate PRs), deleted (branches), failed (left for later)."""
    counts = dict.fromkeys(("seen", "finished", "undone", "closed", "deleted", "failed"), 0)
    before_ms = time.time_ns() // 1_000_000 - int(grace_s * 1000)
    for intent in store.pending_intents(older_than_ms=before_ms):
        counts["seen"] += 1
        job_id = str(intent.job.get("job_id"))
        try:
            settled = service.settle(intent)
        except (GitHubError, ClientError, BotoCoreError, DelegationFailed) as err:
            counts["failed"] += 1
            logger.warning(
                "intent not settled; next run retries", extra={"job_id": job_id, "error": str(err)}
            )
            continue
        counts["closed"] += len(settled.closed)
        counts["deleted"] += len(settled.deleted_branches)
        if settled.pull_request is not None:
            counts["finished"] += 1
            logger.info("delegation finished", extra={"job_id": job_id, "pr": settled.pull_request.number})
        else:
            counts["undone"] += 1
            logger.info("delegation undone", extra={"job_id": job_id, "branches": settled.deleted_branches})
    return counts


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Scheduled entry point (the event is ignored). Environment: RECORDS_TABLE, GITHUB_SECRET_ID,
    GITHUB_API_URL, GITHUB_TIMEOUT_S, JOB_MAX_ATTEMPTS, RECORD_TTL_DAYS, RECONCILE_GRACE_S (default 300).
    Needs dynamodb Query (kind-index), GetItem/PutItem/UpdateItem/DeleteItem on the records table, the
    GitHub secret, and network access to GitHub."""
    settings = ReconcileSettings.from_env()
    store, service = build_service(settings.api_settings())
    counts = reconcile(store, service, grace_s=settings.reconcile_grace_s)
    logger.info("reconciled", extra=counts)
    return counts
