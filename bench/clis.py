"""Real CLI benchmarks: each built-in profile of a real CLI (Claude Code, Codex, Gemini CLI, Qwen Code, aider;
pinned in aipm/local/clis.toml), whatever its kind (ACP, terminal, headless), driven through the one session
interface against the model stand-in, unsandboxed (the sandbox's cost is the same for every driver).

Per profile (``<profile>`` with dashes as underscores):
- ``cli_<profile>_ready_s``: start → ready (ACP: process, ``initialize``, first ``session/new``), median of
  ``BENCH_CLI_STARTS`` starts (headless: 0, nothing runs between tasks; its start is in the overhead);
- ``cli_<profile>_overhead_ms``: per job, the task's wall time minus the stand-in's time answering the CLI's
  model requests (``service_ms`` in its request log, injected waits included), median of ``BENCH_CLI_JOBS``
  jobs on one session with a reset between: what the driver and the CLI itself add around the model;
- ``cli_<profile>_reset_ms``: the reset between jobs, median;
- ``cli_<profile>_rss_mb``: resident memory of the CLI's process tree after the jobs (headless: the peak
  during its jobs, sampled every 0.1 s, as no process is left after them).

``acp_vs_terminal_overhead_ratio``: for the first CLI (in the order of ``REAL_CLIS``: gemini first) with both
an ACP and a terminal profile, the ACP overhead over the terminal one (target ≤ 0.5).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from aipm.local.clis import install
from aipm.local.model_standin import ModelStandin
from aipm.local.model_standin.clients import REAL_CLIS, standin_profile
from ec2_agent.profiles import CliProfile, builtin_profile, builtin_profile_names
from ec2_agent.prompting import task_prompt
from ec2_agent.sessions import AgentSession, open_session

STARTS = int(os.environ.get("BENCH_CLI_STARTS", "3"))
JOBS = int(os.environ.get("BENCH_CLI_JOBS", "5"))
TIMEOUT_S = 120.0


def real_cli_profiles() -> list[CliProfile]:
    """The built-in profiles whose command is a real CLI the stand-in can serve."""
    found = []
    for name in builtin_profile_names():
        profile = builtin_profile(name)
        if Path(profile.argv[0]).name in REAL_CLIS:
            found.append(profile)
    return found


def write_task(workdir: Path, n: int) -> None:
    for child in workdir.iterdir():
        if child.is_file():
            child.unlink()
    criteria = "## Acceptance criteria\n\n- [ ] Measured\n"
    (workdir / "TASK.md").write_text(f"# Bench task {n}\n\n## Objective\n\nMeasure the driver.\n\n{criteria}")


def tree_rss_mb(pid: int | None) -> float:
    """Resident memory of ``pid`` and its descendants (proc(5) ``VmRSS``)."""
    if pid is None:
        return 0.0
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return round(total_kb / 1024, 1)


class PeakRss:
    """The largest :func:`tree_rss_mb` of a session's current process, sampled every 0.1 s in a thread
    while the ``with`` block runs (a headless session's process exists only during its task)."""

    def __init__(self, session: AgentSession) -> None:
        self._session = session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.mb = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.mb = max(self.mb, tree_rss_mb(self._session.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(profile: CliProfile, standin: ModelStandin, root: Path) -> dict[str, float]:
    workdir = root / "ws"
    workdir.mkdir(parents=True)
    profile = standin_profile(profile, standin.base_url, root / "home", workspace=workdir)
    ready: list[float] = []
    session: AgentSession | None = None
    try:
        for _ in range(STARTS):
            if session is not None:
                session.close()
            session = open_session(profile, workdir)
            started = time.monotonic()
            session.start()
            ready.append(time.monotonic() - started)
        assert session is not None
        overhead: list[float] = []
        resets: list[float] = []
        peaks: list[float] = []
        for n in range(JOBS):
            write_task(workdir, n)
            mark = standin.last_seq()
            started = time.monotonic()
            with PeakRss(session) as peak:
                outcome = session.run_task(task_prompt(), timeout_s=TIMEOUT_S)
            peaks.append(peak.mb)
            wall_ms = (time.monotonic() - started) * 1000
            if outcome.kind != "completed":
                raise RuntimeError(f"{profile.name}: job {n} ended {outcome.kind}: {outcome.reason}")
            model_ms = sum(r.service_ms for r in standin.requests_since(mark))
            overhead.append(wall_ms - model_ms)
            started = time.monotonic()
            session.reset()
            resets.append((time.monotonic() - started) * 1000)
        rss = max(peaks) if profile.kind == "headless" else tree_rss_mb(session.pid)
    finally:
        if session is not None:
            session.close()
    key = "cli_" + profile.name.replace("-", "_")
    return {
        f"{key}_ready_s": round(statistics.median(ready), 3),
        f"{key}_overhead_ms": round(statistics.median(overhead), 1),
        f"{key}_reset_ms": round(statistics.median(resets), 1),
        f"{key}_rss_mb": rss,
    }


def run() -> dict[str, float | int]:
    install()
    results: dict[str, float | int] = {}
    by_cli: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="aipm-bench-clis-") as tmp, ModelStandin() as standin:
        for profile in real_cli_profiles():
            figures = measure(profile, standin, Path(tmp) / profile.name)
            results.update(figures)
            overhead = next(v for k, v in figures.items() if k.endswith("_overhead_ms"))
            by_cli[(Path(profile.argv[0]).name, profile.kind)] = overhead
    for cli in REAL_CLIS:
        acp, terminal = (
            by_cli.get((cli, "acp")),
            by_cli.get((cli, "terminal")),
        )
        if acp is not None and terminal:
            results["acp_vs_terminal_overhead_ratio"] = round(acp / terminal, 3)
            break
    return results
