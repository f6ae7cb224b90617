"""Fixtures for the terminal-side tests: the Kiro emulator in real pseudo-terminals."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.sessions import TerminalSession
from tests.session.support import emulator_profile, write_task


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding an ordinary TASK.md."""
    write_task(tmp_path)
    return tmp_path


@pytest.fixture
def session(workdir: Path) -> Iterator[TerminalSession]:
    """A started interactive emulator session; closed afterwards."""
    cli = TerminalSession(emulator_profile(), workdir)
    cli.start()
    yield cli
    cli.close()


@pytest.fixture(scope="session")
def kiro_command(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An executable that runs the emulator, standing in for ``kiro-cli`` in the kiro-* profiles."""
    script = tmp_path_factory.mktemp("bin") / "kiro-cli"
    script.write_text(
        f"#!{sys.executable}\nfrom ec2_agent.kiro_emulator import main\nraise SystemExit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)
