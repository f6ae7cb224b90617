"""`aipm local` stops like a service: SIGTERM, Ctrl-C and a double Ctrl-C each end every process of the stack
(checked by process group and by the run's marker variable) and remove the work folder (kept with --keep).

Ctrl-C is sent as a terminal sends it: SIGINT to the whole foreground process group of `aipm local`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from aipm.local import processes

pytestmark = pytest.mark.e2e

STOP_BOUND_S = 40  # agents' grace (--stop-grace-s 5) + gateway + moto + the final sweep, with room


class LocalRun:
    def __init__(self, tmp_path: Path, *extra: str, grace_s: int = 5) -> None:
        env = {**os.environ, "TMPDIR": str(tmp_path), "AIPM_CONFIG": str(tmp_path.parent / "config.toml")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aipm.cli",
                "local",
                "--work-s",
                "30",
                "--stop-grace-s",
                str(grace_s),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # its own foreground group, as under a terminal
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if re.fullmatch(r"http://127\.0\.0\.1:\d+", self.lines[-1]):
                self.ready.set()

    def value(self, prefix: str) -> str:
        return next(line.removeprefix(prefix).split()[0] for line in self.lines if line.startswith(prefix))

    def work_folder(self) -> Path:
        return Path(next(line.split("work folder ")[1] for line in self.lines if "work folder " in line))

    def text(self) -> str:
        return "\n".join(self.lines)


def busy_stack(
    tmp_path: Path, *extra: str, grace_s: int = 5
) -> tuple[LocalRun, list[processes.ProcessInfo], str]:
    """`aipm local` with one job running (the agent's CLI child alive); returns its processes and run id."""
    run = LocalRun(tmp_path, *extra, grace_s=grace_s)
    assert run.ready.wait(120), run.text()
    api_url, token = run.lines[-1], run.value("ID token:   ")
    body = json.dumps(
        {
            "owner": "aipm-demo",
            "repo": "tools",
            "branchName": "feature/slow",
            "taskTitle": "Slow",
            "objective": "Take a while",
            "prTitle": "feat: slow",
            "acceptanceCriteria": ["It ends"],
        }
    ).encode()
    request = urllib.request.Request(
        f"{api_url}/api/personal-delegate",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        job_id = json.load(resp)["jobId"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the agent's CLI is working on it
        request = urllib.request.Request(
            f"{api_url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            if json.load(resp)["status"] == "generating":
                break
        time.sleep(0.2)
    children = processes.descendants(run.proc.pid)
    assert len(children) >= 5, children  # moto, agent, its CLI, gateway, its workers
    marker = next(
        line.split("=", 1)[1]
        for line in Path(f"/proc/{children[0].pid}/environ").read_bytes().decode().split("\0")
        if line.startswith(f"{processes.STACK_MARKER}=")
    )
    return run, children, marker


def assert_all_gone(run: LocalRun, children: list[processes.ProcessInfo], marker: str) -> None:
    run.proc.wait(timeout=STOP_BOUND_S)
    assert run.proc.returncode == 0, run.text()
    assert run.lines[-1] == "stopped", run.text()
    alive = [c for c in children if (now := processes.process_info(c.pid)) and now.state != "Z"]
    assert not alive, alive
    for pgid in {c.pgid for c in children}:
        assert not processes.group_alive(pgid), pgid
    assert not processes.marked(processes.STACK_MARKER, marker)


def test_sigterm_stops_every_process_and_removes_the_work_folder(tmp_path: Path) -> None:
    run, children, marker = busy_stack(tmp_path)
    folder = run.work_folder()
    assert folder.is_dir() and folder.parent == tmp_path
    assert {c.pgid for c in children} != {os.getpgid(run.proc.pid)}  # not in the terminal's group
    run.proc.send_signal(signal.SIGTERM)
    assert_all_gone(run, children, marker)
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_every_process_and_keep_keeps_the_folder(tmp_path: Path) -> None:
    run, children, marker = busy_stack(tmp_path, "--keep")
    folder = run.work_folder()
    os.killpg(run.proc.pid, signal.SIGINT)
    assert_all_gone(run, children, marker)
    assert folder.is_dir()
    assert f"kept the work folder {folder} (--keep)" in run.text()


def test_double_ctrl_c_kills_every_process_at_once(tmp_path: Path) -> None:
    run, children, marker = busy_stack(tmp_path, grace_s=60)
    folder = run.work_folder()
    os.killpg(run.proc.pid, signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)
    assert_all_gone(run, children, marker)
    assert time.monotonic() - started < 30  # the agent's 60 s grace was not waited for
    assert "second signal: killing every process" in run.text()
    assert not folder.exists()


def test_progress_is_printed_before_anything_is_ready(tmp_path: Path) -> None:
    run = LocalRun(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not run.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "work folder" in run.lines[0]
        assert not run.ready.is_set()
    finally:
        run.proc.send_signal(signal.SIGTERM)
        run.proc.wait(timeout=STOP_BOUND_S)
    assert run.lines[-1] == "stopped"
    assert list(tmp_path.iterdir()) == []
