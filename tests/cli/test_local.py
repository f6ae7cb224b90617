"""`aipm local`: the local stack with its console, the API's base URL on the last line once ready."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def test_aipm_local_prints_its_urls_and_serves_the_api_and_the_console() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipm.cli", "local", "--work-s", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
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
        assert ready.wait(90), "\n".join(lines)
        api_url = lines[-1]
        token = next(line.split()[2] for line in lines if line.startswith("ID token:"))
        console = next(line.split()[1] for line in lines if line.startswith("Console:"))
        domain = next(line.split()[1] for line in lines if line.startswith("Sign-in:"))
        assert f"export AIPM_API_URL={api_url}" in lines[lines.index("CLI:") + 1]

        with urllib.request.urlopen(f"{api_url}/api/health", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        with urllib.request.urlopen(f"{console}config.json", timeout=10) as resp:
            config = json.load(resp)
        assert config["apiUrl"] == api_url and config["auth"]["domain"] == domain
        assert f"aipm login --domain {domain} --client-id {config['auth']['clientId']}" in "\n".join(lines)
        # the printed ID token is the demo person's, and the API takes it
        request = urllib.request.Request(f"{api_url}/api/jobs", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        time.sleep(0.2)
        assert lines[-1] == api_url  # still the last line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert lines[-1] == "stopped"
