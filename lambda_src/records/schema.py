"""The records table's key schema and indexes, as data: the local bootstrap and the CDK app build from it."""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "ttl"
IDEMPOTENCY_KEY = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: str
    sort_key: str


INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec("status-index", "status", "createdAt"),
    IndexSpec("repo-index", "repo", "createdAt"),
    IndexSpec("kind-index", "kind", "createdAt"),
)
