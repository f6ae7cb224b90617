"""Fixtures and helpers for driving the real agent CLIs (pinned in aipm/local/clis.toml) against the loopback
model stand-in, shared by the ACP, terminal and headless tests (registered in tests/conftest.py)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aipm.local.clis import install
from aipm.local.model_standin import ModelStandin


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    """The pinned real CLIs, installed from npm and PyPI into .cache/clis on first use (cached)."""
    return install()


@pytest.fixture
def standin() -> Iterator[ModelStandin]:
    with ModelStandin() as server:
        yield server


def write_task(workdir: Path, title: str, objective: str = "Say hello.") -> str:
    """A fresh checkout holding only TASK.md (as the runner leaves it); returns the TASK.md text."""
    for child in workdir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    text = (
        f"# {title}\n\n## Objective\n\n{objective}\n\n## Constraints\n\nNone stated.\n\n"
        "## Acceptance criteria\n\n- [ ] It is done\n"
    )
    (workdir / "TASK.md").write_text(text)
    return text


def cancel_when_the_model_is_waited_for(standin: ModelStandin) -> threading.Event:
    """An event set once the stand-in holds a request open (the CLI is mid-turn), or after 60 s."""
    cancel = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while standin.waiting() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    return cancel
