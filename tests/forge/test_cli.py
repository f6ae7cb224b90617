"""`python -m aipm.local.forge` runs one forge: it prints its base URL once ready and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import urllib3

from tests.forge.support import TOKEN


def test_standalone_forge(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    token_file.chmod(0o600)
    command = [
        sys.executable,
        "-m",
        "aipm.local.forge",
        "--root",
        str(tmp_path / "root"),
        "--token-file",
        str(token_file),
        "--port",
        "0",
        "--repo",
        "acme/tools",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        answer = urllib3.request(
            "GET",
            f"{base_url}/api/v3/repos/acme/tools",
            headers={"Authorization": f"Bearer {TOKEN}"},
            retries=False,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert base_url.startswith("http://127.0.0.1:")
    assert answer.status == 200
    assert answer.json()["default_branch"] == "main"
    assert process.returncode == 0
    assert TOKEN not in stderr
