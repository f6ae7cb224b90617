"""`aipm local`: the local stack with its console on stable ports, the API's base URL on the last line once
ready, the demo person signed in, and a saved `local` profile (URL and sign-in) that the CLI picks up."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e


def free_base_port() -> int:
    """A port N such that N, N+1 and N+2 are free on 127.0.0.1 a moment ago, below the ephemeral range
    (where the stack's other parts take their random ports)."""
    for _ in range(50):
        base = random.randrange(20000, 30000)
        try:
            for port in (base, base + 1, base + 2):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free consecutive ports")


def start_local(env: dict[str, str], port: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aipm.cli", "local", "--work-s", "0.2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
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
    if not ready.wait(120):
        proc.kill()
        _, err = proc.communicate()
        listening = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
        raise AssertionError("\n".join(lines) + "\n" + err + listening)
    return proc, lines


def stop(proc: subprocess.Popen[str], lines: list[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0
    assert lines[-1] == "stopped"


def test_aipm_local_serves_on_stable_ports_and_saves_a_profile_the_cli_uses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPM_API")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # the sign-in tokens go to <it>/aipm/tokens/
    env["AIPM_CONFIG"] = str(tmp_path / "config.toml")
    port = free_base_port()
    proc, lines = start_local(env, port)
    try:
        api_url = lines[-1]
        assert api_url == f"http://127.0.0.1:{port}"
        token = next(line.split()[2] for line in lines if line.startswith("ID token:"))
        console = next(line.split()[1] for line in lines if line.startswith("Console:"))
        domain = next(line.split()[1] for line in lines if line.startswith("Sign-in:"))
        assert console == f"http://127.0.0.1:{port + 1}/"
        assert f"export AIPM_API_URL={api_url}" in "\n".join(lines)
        assert lines[0].startswith("[") and "work folder" in lines[0]  # progress from the start

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

        # The printed attach address is the console's, and the printed token is the one the agent takes: a
        # refusal for the branch (not a job's) comes only after the token was accepted.
        attach = next(line.split()[1] for line in lines if line.startswith("Attach:"))
        agent_token = next(line.split()[1] for line in lines if line.startswith("  token "))
        assert config["attachUrl"] == attach and attach.startswith("ws://127.0.0.1:")
        with connect(attach, open_timeout=10) as ws:
            request = {"type": "attach", "token": agent_token, "owner": "aipm-demo", "repo": "tools"}
            ws.send(json.dumps({**request, "branch": "feature/no-such-job"}))
            refusal = json.loads(ws.recv(timeout=30))
        assert refusal == {
            "type": "error",
            "message": "'feature/no-such-job' is not the branch of a job on aipm-demo/tools",
        }

        # The CLI finds the stack through the saved profile: no URL or token in its environment.
        assert (tmp_path / "config.toml").stat().st_mode & 0o077 == 0
        listed = subprocess.run(
            [sys.executable, "-m", "aipm.cli", "jobs", "list", "-o", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["jobs"] == []
        time.sleep(0.2)
        assert lines[-1] == api_url  # still the last line
    finally:
        stop(proc, lines)

    assert (tmp_path / "aipm" / "tokens" / "local.json").stat().st_mode & 0o077 == 0


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = {**os.environ, "AIPM_CONFIG": str(tmp_path / "config.toml"), "TMPDIR": str(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-m", "aipm.cli", "local", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} (the API) cannot be used" in done.stderr and "--port" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == []  # no work folder left
