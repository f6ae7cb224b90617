"""`make bench`: runs every benchmark suite, prints one table, writes bench/results.json (a flat object).

Each suite is a module in this package exposing `run() -> dict[str, float | int]`; `--only NAME` runs one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

SUITES = ("agent", "delegate")
RESULTS = Path(__file__).with_name("results.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=SUITES, action="append", help="run only this suite (repeatable)")
    args = parser.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
