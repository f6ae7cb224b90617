"""Finding and ending the processes a run started: by process group and by a marker environment variable.

Every child of the local stack runs in one process group of its own (not the terminal's foreground group, so
a Ctrl-C reaches only the stack, which then stops its children in order), and carries the environment
variable `AIPM_LOCAL_STACK=<run id>`. Grandchildren that leave the group (a CLI under a PTY starts a new
session) still inherit the marker, so `marked(...)` finds every process of a run, even one re-parented to
init. The same lookup backs the test suite's end-of-run check (`tests/conftest.py`, marker `AIPM_TEST_RUN`)
and `make bench`'s.

Linux only: reads `/proc/<pid>/environ` and `/proc/<pid>/stat` (proc(5)).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STACK_MARKER = "AIPM_LOCAL_STACK"
# The markers of a test run (tests/conftest.py) and of `make bench` (bench/__main__.py): a child started with
# a trimmed environment must still carry them, or the end-of-run check cannot find it once orphaned.
RUN_MARKERS = ("AIPM_TEST_RUN", "AIPM_BENCH_RUN")
PROC = Path("/proc")
KILL_WAIT_S = 5


@dataclass(frozen=True)
class ProcessInfo:
    """One live process: `pid`, its parent `ppid`, process group `pgid`, `state` letter and command line."""

    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str

    def describe(self) -> str:
        return f"pid {self.pid} (ppid {self.ppid}, pgid {self.pgid}): {self.cmdline[:160]}"


def process_info(pid: int) -> ProcessInfo | None:
    """The process `pid` as /proc shows it now, or None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw_cmd = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    cmdline = raw_cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcessInfo(pid, int(fields[1]), int(fields[2]), fields[0], cmdline)


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def inherited_markers() -> dict[str, str]:
    """The run markers set in this process's environment, to add to a child's trimmed environment."""
    return {name: os.environ[name] for name in RUN_MARKERS if name in os.environ}


def all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def marked(name: str, value: str, *, exclude: Iterable[int] = ()) -> list[ProcessInfo]:
    """Live (non-zombie) processes whose environment holds `name=value`, except `exclude` and this one."""
    marker = f"{name}={value}".encode()
    skip = {os.getpid(), *exclude}
    found = []
    for pid in all_pids():
        if pid in skip or not _environ_has(pid, marker):
            continue
        info = process_info(pid)
        if info is not None and info.state != "Z":
            found.append(info)
    return found


def descendants(root_pid: int) -> list[ProcessInfo]:
    """Live (non-zombie) processes below `root_pid` in the parent tree."""
    infos = [i for i in (process_info(p) for p in all_pids()) if i is not None]
    children: dict[int, list[ProcessInfo]] = {}
    for info in infos:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.state != "Z":
                found.append(child)
            todo.append(child.pid)
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies not counted)."""
    return any(i.pgid == pgid and i.state != "Z" for i in (process_info(p) for p in all_pids()) if i)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to process group `pgid`; a group that no longer exists is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send `sig` to `pid`; a process that has ended is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_marked(name: str, value: str, *, grace_s: float) -> list[ProcessInfo]:
    """SIGTERM every process marked `name=value`, wait up to `grace_s`, SIGKILL the rest and wait (up to
    `KILL_WAIT_S`) until they are gone.

    Returns the processes that were found alive at the start (empty: nothing was left).
    """
    found = marked(name, value)
    for info in found:
        kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and marked(name, value):
        time.sleep(0.05)
    for info in marked(name, value):
        kill(info.pid)
    deadline = time.monotonic() + KILL_WAIT_S  # SIGKILL is delivered when the process is next scheduled
    while time.monotonic() < deadline and marked(name, value):
        time.sleep(0.02)
    return found
