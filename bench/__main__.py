"""`make bench`: runs every benchmark suite, prints one table, writes bench/results.json (a flat object).

Each suite is a module in this package exposing `run() -> dict[str, float | int]`; `--only NAME` runs one.
At the end it fails (exit 1) if any process it started is still alive: every child inherits
`AIPM_BENCH_RUN=<uuid>`, so one re-parented to init is found too (see `aipm.local.processes`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

from aipm.local import processes

SUITES = ("agent", "delegate", "workspace", "clis")
RESULTS = Path(__file__).with_name("results.json")
RUN_MARKER = "AIPM_BENCH_RUN"
LEFTOVER_GRACE_S = 10


def leftovers(run_id: str) -> list[processes.ProcessInfo]:
    """Processes this run started that are still alive after `LEFTOVER_GRACE_S`."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
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
    keep_previous = RESULTS.exists() and args.only
    results: dict[str, float | int] = json.loads(RESULTS.read_text()) if keep_previous else {}
    for name in args.only or SUITES:
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
    left = leftovers(run_id)
    if left:
        print(
            f"FAILED: {len(left)} process(es) started by the benchmark outlived it (now killed):",
            file=sys.stderr,
        )
        for info in left:
            print(f"  {info.describe()}", file=sys.stderr)
            processes.kill(info.pid)
        return 1
    print("no process left behind", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
