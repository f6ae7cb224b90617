"""Following a job until it ends: each new timeline step is printed as it appears (polling the job)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from aipm.cli.api import ApiClient
from aipm.cli.errors import CliError, Exit
from aipm.cli.render import TERMINAL, step_line

SPINNER = "|/-\\"


class Progress:
    """Prints timeline steps; on a terminal it also keeps one status line (status, elapsed) up to date."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self._out = out
        self._live = live
        self._shown = False
        self._ticks = 0
        self._started: str | None = None

    def step(self, entry: Mapping[str, Any]) -> None:
        self._clear()
        if self._started is None:
            self._started = str(entry.get("at", ""))
        self._out.write(step_line(entry, self._started) + "\n")
        self._out.flush()

    def output(self, text: str) -> None:
        """New agent output (`--logs`), each line marked `| `."""
        if not text:
            return
        self._clear()
        for line in text.splitlines():
            self._out.write(f"  | {line}\n")
        self._out.flush()

    def tick(self, job: Mapping[str, Any], elapsed_s: float) -> None:
        if not self._live:
            return
        self._ticks += 1
        spin = SPINNER[self._ticks % len(SPINNER)]
        self._out.write(f"\r{spin} {job.get('status')}  {elapsed_s:5.0f} s  (Ctrl-C stops following)")
        self._out.flush()
        self._shown = True

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._shown:
            self._out.write("\r\033[K")
            self._shown = False


def follow(
    client: ApiClient,
    job_id: str,
    *,
    interval_s: float = 1.0,
    timeout_s: float | None = None,
    on_step: Callable[[Mapping[str, Any]], None] | None = None,
    on_tick: Callable[[Mapping[str, Any], float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll GET /api/jobs/{id} every `interval_s` until the job ends; return the final job.

    `on_step` sees each timeline entry once, in order. Raises CliError(STILL_RUNNING) when `timeout_s`
    passes first (the job itself goes on).
    """
    started = clock()
    seen = 0
    while True:
        job = client.job(job_id)
        entries = job.get("timeline") or []
        if len(entries) < seen:  # never expected; do not skip anything if it happens
            seen = 0
        for entry in entries[seen:]:
            if on_step is not None:
                on_step(entry)
        seen = len(entries)
        if job.get("status") in TERMINAL:
            return job
        elapsed = clock() - started
        if on_tick is not None:
            on_tick(job, elapsed)
        if timeout_s is not None and elapsed >= timeout_s:
            raise CliError(
                f"job {job_id} is still {job.get('status')} after {timeout_s:.0f} s",
                Exit.STILL_RUNNING,
                hint=f"it goes on; follow it with: aipm jobs show {job_id} --follow",
            )
        sleep(interval_s)


def tail_delta(old: str, new: str) -> str:
    """The part of `new` not already shown, when both are tails of the same growing output."""
    if not old:
        return new
    if new == old:
        return ""
    if new.startswith(old):
        return new[len(old) :]
    for size in range(min(len(old), len(new)), 0, -1):
        if old.endswith(new[:size]):
            return new[size:]
    return new
