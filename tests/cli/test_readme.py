"""Every fenced shell block of the README is tagged, and every block tagged `local` runs as written against a
live local stack (`aipm local`), in bash on this machine: `aipm` on PATH as after `source .venv/bin/activate`,
and `AIPM_API_URL` / `AIPM_API_TOKEN` exported from what `aipm local` printed, as the README says to."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
TAG = re.compile(r"<!-- example: (local|cloud|illustrative)\b[^>]*-->\s*$")
SHELLS = {"bash", "sh", "shell", "console"}


def shell_blocks() -> list[tuple[int, str | None, str]]:
    """(line number, tag or None, code) of every fenced shell block."""
    found = []
    for match in FENCE.finditer(README):
        if match.group(1) not in SHELLS:
            continue
        before = README[: match.start()].rstrip("\n").splitlines()
        tag = TAG.search(before[-1]) if before else None
        line = README[: match.start()].count("\n") + 1
        found.append((line, tag.group(1) if tag else None, match.group(2)))
    return found


def test_every_shell_block_is_tagged() -> None:
    blocks = shell_blocks()
    assert blocks
    untagged = [line for line, tag, _ in blocks if tag is None]
    assert not untagged, (
        f"README lines {untagged}: tag each shell block with <!-- example: local|cloud|illustrative --> "
        "on the line before it"
    )
    assert any(tag == "local" for _, tag, _ in blocks)


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPM_API")}
    env.update(XDG_CONFIG_HOME=str(home), AIPM_CONFIG=str(home / "config.toml"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipm.cli", "local", "--port", "0", "--work-s", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if re.fullmatch(r"http://127\.0\.0\.1:\d+", lines[-1]):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(180), "\n".join(lines)
        env["AIPM_API_URL"] = lines[-1]
        env["AIPM_API_TOKEN"] = next(line.split()[2] for line in lines if line.startswith("ID token:"))
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "line, code",
    [
        pytest.param(line, code, id=f"README-line-{line}")
        for line, tag, code in shell_blocks()
        if tag == "local"
    ],
)
def test_local_blocks_run_as_written(line: int, code: str, local_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=local_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    shown = f"README line {line}:\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    for problem in ("Unauthorized", '"is required"', "command not found", "aipm: error"):
        assert problem not in done.stdout + done.stderr, shown
    assert list(tmp_path.iterdir()) == [], "a README block leaves files behind"
