"""Waiting in the end-to-end tests for what the product does after a job's record says it ended (the outcome
comment, a follow-up's reply): the publisher posts it a moment later, off the CLI's critical path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(find: Callable[[], list[T]], timeout_s: float = 30) -> list[T]:
    """What `find` returns once it is not empty, polled every 0.1 s; the last (empty) result after
    `timeout_s` seconds, for the caller's assertion to report."""
    deadline = time.monotonic() + timeout_s
    while not (found := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found
