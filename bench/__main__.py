"""`make bench`: runs every benchmark suite, prints one table, writes bench/results.json (a flat object).

Each suite is a module in this package exposing `run() -> dict[str, float | int]`; `--only NAME` runs one.
At the end — also when a suite failed — it fails (exit 1) if any process it started is still alive, and
kills it. Two nets find them: the benchmark is a child subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`), so a
descendant orphaned by its parent (a CLI's helper, a double fork, a new session) is re-parented to it
rather than to init and stays among its descendants; and every child that keeps its environment inherits
`AIPM_BENCH_RUN=<uuid>` (see `aipm.local.processes`), which finds one that left the tree otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

from aipm.local import processes

SUITES = ("agent", "delegate", "webhook", "workspace", "clis", "screen")
RESULTS = Path(__file__).with_name("results.json")
RUN_MARKER = "AIPM_BENCH_RUN"
LEFTOVER_GRACE_S = 10
_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    """Make orphaned descendants this process's children (prctl(2)); OSError if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_orphans() -> None:
    """Collect the exit status of every ended child (orphans re-parented here have no other parent)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def leftovers(run_id: str) -> list[processes.ProcessInfo]:
    """Processes this run started that are still alive after `LEFTOVER_GRACE_S`."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        reap_orphans()
        found = {i.pid: i for i in processes.descendants(os.getpid())}
        found.update((i.pid, i) for i in processes.marked(RUN_MARKER, run_id))
        if not found or time.monotonic() > deadline:
            return sorted(found.values(), key=lambda i: i.pid)
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=SUITES, action="append", help="run only this suite (repeatable)")
    args = parser.parse_args()
    run_id = os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)
    become_subreaper()
    try:
        run_suites(args.only)
    finally:  # also when a suite failed: its processes are the likeliest to be left
        left = end_leftovers(run_id)
    return 1 if left else 0


def end_leftovers(run_id: str) -> list[processes.ProcessInfo]:
    """Find (after `LEFTOVER_GRACE_S`), report and kill the processes this run started that are still
    alive; returns them."""
    left = leftovers(run_id)
    if left:
        print(
            f"FAILED: {len(left)} process(es) started by the benchmark outlived it (now killed):",
            file=sys.stderr,
        )
        for info in left:
            print(f"  {info.describe()}", file=sys.stderr)
            processes.kill(info.pid)
    else:
        print("no process left behind", file=sys.stderr)
    reap_orphans()
    return left


def run_suites(only: list[str] | None) -> None:
    """Run the suites, print the table and write the results (a suite's exception propagates)."""
    keep_previous = RESULTS.exists() and only
    results: dict[str, float | int] = json.loads(RESULTS.read_text()) if keep_previous else {}
    for name in only or SUITES:
        started = time.monotonic()
        print(f"running {name} …", file=sys.stderr, flush=True)
        figures = importlib.import_module(f"bench.{name}").run()
        print(f"{name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        results.update(figures)
    width = max(len(k) for k in results)
    print(f"{'figure':<{width}}  value")
    for key in sorted(results):
        value = results[key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
