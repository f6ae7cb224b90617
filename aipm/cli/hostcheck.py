"""Runs ON the agent host (via SSM send-command from `aipm ops status`): the agent's health as one JSON line.

`/opt/aipm/venv/bin/python -m aipm.cli.hostcheck` reads the agent's settings from /etc/aipm/agent.env,
the agent token from Secrets Manager (as the agent does), asks both agent ports for `/health` and systemd
for the unit's state, and prints `{"unit": {...}, "pool": {...}, "processor": {...}, "errors": [...]}`.
The token is never printed. Only the standard library and boto3 (both in the agent's venv) are used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

AGENT_ENV_FILE = Path("/etc/aipm/agent.env")
UNIT = "aipm-agent.service"
UNIT_PROPERTIES = ("ActiveState", "SubState", "NRestarts", "ExecMainStartTimestamp", "ExecMainPID")


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY='value'` / `KEY=value` lines of a systemd EnvironmentFile (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def unit_state() -> dict[str, str]:
    """systemd's view of the agent unit (empty with an `error` when systemctl is not there)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return {"error": "systemctl not found"}
    argv = [systemctl, "show", UNIT, "--no-pager", "--property", ",".join(UNIT_PROPERTIES)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    state = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0:
        state["error"] = done.stderr.strip()[:300]
    return state


def agent_token(settings: Mapping[str, str]) -> str:
    import boto3

    region = settings.get("AWS_REGION") or settings.get("AWS_DEFAULT_REGION")
    client = boto3.client("secretsmanager", region_name=region)
    raw = client.get_secret_value(SecretId=settings["AIPM_AGENT_TOKEN_SECRET_ID"])["SecretString"]
    return str(json.loads(raw)["token"])


def health(host: str, port: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(  # http to the agent's own private address
        f"http://{host}:{int(port)}/health", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        return dict(json.load(resp))


def check(env_file: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"unit": unit_state(), "errors": []}
    try:
        settings = read_env_file(env_file)
    except OSError as err:
        report["errors"].append(f"cannot read {env_file}: {err.strerror}")
        return report
    report["agentId"] = settings.get("AIPM_AGENT_ID")
    host = settings.get("AIPM_BIND_HOST", "127.0.0.1")
    try:
        token = agent_token(settings)
    except Exception as err:  # noqa: BLE001 - reported, never raised: this is a diagnostic
        report["errors"].append(f"cannot read the agent token: {type(err).__name__}: {err}")
        return report
    for name, key, default in (
        ("pool", "AIPM_POOL_PORT", "8081"),
        ("processor", "AIPM_PROCESSOR_PORT", "8082"),
    ):
        port = settings.get(key, default)
        try:
            report[name] = health(host, port, token)
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as err:
            report[name] = None
            report["errors"].append(f"{name} port {host}:{port} /health: {getattr(err, 'reason', err)}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The AIPM agent's health on this host, as JSON.")
    parser.add_argument("--env-file", type=Path, default=AGENT_ENV_FILE)
    args = parser.parse_args(argv)
    report = check(args.env_file)
    print(json.dumps(report, sort_keys=True))
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
