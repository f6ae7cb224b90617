"""Checks before a push: the commands a repository declares in `.aipm.yml`, run in the job's sandbox.

The file is read from the PR's **base branch** through the GitHub API (never from the work tree, which the CLI
controls), once per job, before the CLI runs:

```yaml
checks:                      # at most 10; each runs in /workspace, inside the slot's sandbox
  - name: unit tests         # 1-80 characters
    run: [python, -m, pytest, -q]   # an argument list (no shell), 1-64 items
    timeout_s: 300           # 1-1800, default 300: a check still running then is killed (it fails)
max_rounds: 2                # 1-5, default 2: CLI turns in all (the first one included)
```

After the CLI finishes, every check runs; if one fails and rounds are left, the CLI gets another turn with
the failures (each check's name, exit status and the tail of its output) shown at the top of its TASK.md; the
branch's TASK.md is put back before the commit. Each round is recorded in the job's timeline. A job whose
checks still fail after the last round ends `checks_failed` and **nothing is pushed** (a red change never
reaches the PR; the PR comment shows each check and its output). A missing file means no checks; an invalid
one fails the job with the reason (the repository must fix it). The checks get the sandbox's environment and
network, the same as the CLI's; no credentials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ec2_agent.prompting import strip_control
from ec2_agent.sandbox import Sandbox
from lambda_src.taskdoc import quoted, quoted_inline

CONFIG_FILE = ".aipm.yml"
MAX_CONFIG_BYTES = 64 * 1024
OUTPUT_TAIL_CHARS = 2000
_READ_LIMIT_BYTES = 4 * 1024 * 1024


class ChecksConfigInvalid(ValueError):
    """`.aipm.yml` is not valid YAML or not the documented shape; the message names what is wrong."""


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")]
    run: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]],
        Field(min_length=1, max_length=64),
    ]
    timeout_s: float = Field(default=300, ge=1, le=1800)


class ChecksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: Annotated[list[Check], Field(max_length=10)] = Field(default_factory=list)
    max_rounds: int = Field(default=2, ge=1, le=5)


def load_config(text: str | None) -> ChecksConfig | None:
    """The repository's checks from the text of `.aipm.yml` (None: no file, no checks).

    Raises ChecksConfigInvalid naming the problem."""
    if text is None:
        return None
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ChecksConfigInvalid(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ChecksConfigInvalid(
            f"{CONFIG_FILE} is not valid YAML: {strip_control(str(err))[:200]}"
        ) from None
    if document is None:
        return None
    try:
        return ChecksConfig.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ChecksConfigInvalid(f"{CONFIG_FILE}: {where}: {first['msg']}") from None


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    exit_status: int | None  # None: killed at its time limit
    duration_s: float
    output_tail: str
    timeout_s: float = 0.0

    @property
    def summary(self) -> str:
        if self.exit_status is None:
            return f"{self.name}: killed at its time limit ({self.timeout_s:g} s)"
        return f"{self.name}: {'passed' if self.passed else f'failed (exit {self.exit_status})'}"


def run_checks(sandbox: Sandbox, config: ChecksConfig, env: Mapping[str, str]) -> list[CheckResult]:
    """Run every check, one after another, inside `sandbox` (its /workspace is the job's tree). A check that
    outlives its `timeout_s` is killed with its whole sandbox process group. Never raises for a check's own
    failure; OSError if a sandbox cannot start."""
    return [_run(sandbox, check, env) for check in config.checks]


def _run(sandbox: Sandbox, check: Check, env: Mapping[str, str]) -> CheckResult:
    argv, outer_env = sandbox.command(check.run, env)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=outer_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail = _Tail(proc.stdout)  # a check may print without end: only the last _READ_LIMIT_BYTES are kept
    try:
        status: int | None = proc.wait(timeout=check.timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap --die-with-parent: the namespace goes with it
        proc.wait()
        status = None
    text = strip_control(tail.result().decode("utf-8", "replace"), keep_newlines=True, keep_tabs=True)
    return CheckResult(
        name=check.name,
        passed=status == 0,
        exit_status=status,
        duration_s=time.monotonic() - started,
        output_tail=text[-OUTPUT_TAIL_CHARS:],
        timeout_s=check.timeout_s,
    )


class _Tail:
    """Reads a pipe to its end on a thread of its own, keeping the last _READ_LIMIT_BYTES."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._kept = bytearray()
        self._thread = threading.Thread(target=self._read, name="check-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._stream:
            while chunk := self._stream.read(65536):
                self._kept += chunk
                if len(self._kept) > 2 * _READ_LIMIT_BYTES:
                    del self._kept[:-_READ_LIMIT_BYTES]

    def result(self) -> bytes:
        """What was kept, once the pipe closed (every writer gone: the sandbox ended)."""
        self._thread.join()
        return bytes(self._kept[-_READ_LIMIT_BYTES:])


def round_detail(round_no: int, results: list[CheckResult]) -> str:
    """The timeline's line for one round of checks."""
    failed = [r for r in results if not r.passed]
    verdict = "all passed" if not failed else f"{len(failed)} of {len(results)} failed"
    return f"checks round {round_no}: {verdict} ({'; '.join(r.summary for r in results)})"


def failure_brief(task_md: str, round_no: int, results: list[CheckResult]) -> str:
    """TASK.md for the CLI's next turn: the failed checks (name, exit, output tail quoted as data), then the
    task as before."""
    parts = [
        f"# Checks failed (round {round_no})",
        "",
        "You already worked on the task below in this directory. The repository's checks ran on your changes "
        "and some failed. Fix the cause (not the checks) and keep the rest of your work.",
        "",
    ]
    for result in results:
        if result.passed:
            continue
        parts += [
            f"## {quoted_inline(result.name)}: {result.summary.split(': ', 1)[1]}",
            "",
            quoted(result.output_tail),
            "",
        ]
    return "\n".join(parts) + "\n---\n\n" + task_md


def comment_section(results: list[CheckResult]) -> str:
    """The PR comment's part on checks: pass/fail per check and the tail of each failed one's output."""
    lines = ["Checks:"]
    for result in results:
        mark = "✅" if result.passed else "❌"
        lines.append(f"- {mark} {quoted_inline(result.name)} — {result.summary.split(': ', 1)[1]}")
    for result in results:
        if not result.passed and result.output_tail:
            lines += [
                "",
                f"Output of {quoted_inline(result.name)} (tail):",
                quoted(result.output_tail[-1000:]),
            ]
    return "\n".join(lines)
