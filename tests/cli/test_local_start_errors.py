"""A local stack that cannot start says why in one clear error (with the failing part's log tail, since its
log goes with the work folder), leaves no process and no folder behind, and `make demo` exits 1 without a
traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aipm.local import processes
from aipm.local.stack import LocalStack, StackError, StackOptions

pytestmark = pytest.mark.e2e


def test_the_demo_names_an_unknown_cli_profile_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aipm.local.demo", "--cli", "no-such-cli"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("demo: error: unknown CLI profile 'no-such-cli'; known: ")
    assert "emulator" in done.stderr and done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_agent_that_exits_at_start_up_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    """A real agent refusing its configuration (AIPM_GIT_TIMEOUT_S must be > 0)."""
    stack = LocalStack(tmp_path / "stack", StackOptions(agent_env={"AIPM_GIT_TIMEOUT_S": "-1"}))
    marker = stack.run_id
    with pytest.raises(StackError) as failed, stack:
        pass
    message = str(failed.value)
    assert message.startswith("agent 1 exited at start-up (status 2); its log agent-1.log ends:\n  ")
    assert "invalid agent configuration: AIPM_GIT_TIMEOUT_S" in message
    assert not processes.marked(processes.STACK_MARKER, marker)  # moto, the forge, the gateway: all gone


def test_a_console_without_its_pages_is_named_not_blamed_on_its_port(tmp_path: Path) -> None:
    """A wheel that lacked the console's files once failed as 'the console cannot listen on port 0'."""
    (tmp_path / "web").mkdir()
    stack = LocalStack(tmp_path / "stack", StackOptions(console_dir=tmp_path / "web"))
    marker = stack.run_id
    with pytest.raises(StackError) as failed, stack:
        pass
    assert str(failed.value) == f"the console's pages cannot be read: no index.html in {tmp_path / 'web'}"
    assert not processes.marked(processes.STACK_MARKER, marker)
