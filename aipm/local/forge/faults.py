"""Test and benchmark hooks of the forge: a fixed delay per API call, and scripted failures per route."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

# Route names that faults can target. REST and GraphQL requests, git smart HTTP ("git"), PR pages, and the
# GraphQL fields the client uses ("graphql.<field>": the field fails inside an otherwise successful answer).
ROUTES = frozenset(
    {
        "get_repo",
        "get_branch",
        "get_ref",
        "create_ref",
        "delete_ref",
        "get_contents",
        "put_contents",
        "list_pulls",
        "create_pull",
        "get_pull",
        "list_comments",
        "create_comment",
        "add_labels",
        "list_review_comments",
        "create_review_comment",
        "reply_review_comment",
        "create_review",
        "graphql",
        "graphql.repository",
        "graphql.createRef",
        "graphql.createCommitOnBranch",
        "graphql.createPullRequest",
        "graphql.deleteRef",
        "git",
        "pull_page",
    }
)


@dataclass(frozen=True)
class Fault:
    """Answer `status` to calls number `first_call`..`last_call` of a route (counted since the forge started).

    With `after_effect`, the call is carried out first and its answer replaced by the error: a request that
    landed although the client saw it fail.
    """

    status: int
    first_call: int
    last_call: int
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = "Injected fault"
    after_effect: bool = False


class FaultPlan:
    """Thread-safe fault table and call counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._faults: dict[str, list[Fault]] = {}
        self._latency_s = 0.0

    @property
    def latency_s(self) -> float:
        with self._lock:
            return self._latency_s

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency_s = seconds

    def inject(
        self,
        route: str,
        status: int,
        *,
        nth: int = 1,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        after_effect: bool = False,
    ) -> None:
        """Fail the `nth` next call of `route` (and the `times - 1` after it) with `status`."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {sorted(ROUTES)}")
        if nth < 1 or times < 1 or not 400 <= status <= 599:
            raise ValueError("nth and times must be >= 1 and status an HTTP error status")
        with self._lock:
            first = self._calls[route] + nth
            fault = Fault(
                status=status,
                first_call=first,
                last_call=first + times - 1,
                headers=dict(headers or {}),
                message=message or f"Injected fault ({status})",
                after_effect=after_effect,
            )
            self._faults.setdefault(route, []).append(fault)

    def clear(self) -> None:
        """Drop every fault and the latency (call counters keep counting)."""
        with self._lock:
            self._faults.clear()
            self._latency_s = 0.0

    def calls(self, route: str) -> int:
        with self._lock:
            return self._calls[route]

    def record_call(self, route: str) -> Fault | None:
        """Count one call of `route`; the fault that applies to it, if any."""
        with self._lock:
            self._calls[route] += 1
            number = self._calls[route]
            return next(
                (f for f in self._faults.get(route, []) if f.first_call <= number <= f.last_call),
                None,
            )
