"""Checks a job-list cursor before it reaches DynamoDB, so a forged or foreign cursor is a 400, not a 5xx.

The cursor is JobStore.list_jobs' opaque `next_cursor`: the urlsafe-base64 JSON of DynamoDB's
LastEvaluatedKey on the index that listing uses (kind-index, status-index or repo-index; see
docs/architecture.md). A cursor is accepted only if it is exactly such a key for the listing asked for.
"""

from __future__ import annotations

import base64
import binascii
import json

from lambda_src.records.models import JobStatus
from lambda_src.records.store import InvalidCursor


def check_cursor(cursor: str, *, status: JobStatus | None, repo: str | None) -> None:
    """Raise InvalidCursor unless `cursor` is a start key of the listing filtered by `status` and `repo`."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8"))
    except (UnicodeError, binascii.Error, ValueError):
        raise InvalidCursor("cursor is not one this API issued") from None
    if repo is not None:
        index_key = ("repo", repo)
    elif status is not None:
        index_key = ("status", status.value)
    else:
        index_key = ("kind", "job")
    expected = {"pk", "sk", "createdAt", index_key[0]}
    if (
        not isinstance(key, dict)
        or set(key) != expected
        or not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
        or key[index_key[0]]["S"] != index_key[1]
    ):
        raise InvalidCursor("cursor does not belong to this listing")
