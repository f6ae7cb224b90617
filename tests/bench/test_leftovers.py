"""`make bench` fails when a process it started outlives it: real child processes that escape every way a
CLI's helpers do — a new session, an emptied environment (no run marker), a parent that exits (orphaned)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from aipm.local import processes

# A benchmark stand-in: becomes the subreaper as `python -m bench` does, then starts a grandchild that calls
# setsid, clears its environment and is orphaned when its parent exits; then runs the end-of-run check.
SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from bench.__main__ import become_subreaper, end_leftovers
    become_subreaper()
    escape = "import os, subprocess; subprocess.Popen(['sleep', '300'], env={}, start_new_session=True)"
    subprocess.run([sys.executable, "-c", escape], env={}, check=True)  # its parent is gone when this returns
    time.sleep(0.2)
    print("LEFT", [i.pid for i in end_leftovers("no-marker-reaches-it")], flush=True)
    """
)


def test_an_orphan_with_no_marker_in_a_new_session_is_found_and_killed() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("LEFT"))
    pids = [int(p) for p in line.removeprefix("LEFT [").removesuffix("]").split(",") if p.strip()]
    assert len(pids) == 1, result
    assert "outlived it (now killed)" in result.stderr and "sleep 300" in result.stderr
    time.sleep(0.5)
    info = processes.process_info(pids[0])
    assert info is None or info.state == "Z", info


def test_nothing_left_is_reported_as_such() -> None:
    script = "from bench.__main__ import become_subreaper, end_leftovers\nbecome_subreaper()\n"
    script += "import subprocess; subprocess.run(['true'], check=True)\nprint(end_leftovers('x'))\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "[]" and "no process left behind" in result.stderr
