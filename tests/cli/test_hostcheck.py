"""The script `aipm ops status` runs on the agent host, run here against a real agent of the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aipm.cli.app import _status_lines
from aipm.local.stack import STAGE, LocalStack

pytestmark = pytest.mark.e2e


def hostcheck(stack: LocalStack, env_file: Path) -> tuple[int, dict[str, object], str]:
    env = {"PATH": os.environ["PATH"], **stack.aws_env()}
    done = subprocess.run(
        [sys.executable, "-m", "aipm.cli.hostcheck", "--env-file", str(env_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def agent_env_file(stack: LocalStack, path: Path, *, pool_port: int | None = None) -> Path:
    agent = stack.agents[0]
    path.write_text(
        f"AIPM_AGENT_ID='{agent.agent_id}'\nAIPM_BIND_HOST='127.0.0.1'\n"
        f"AIPM_POOL_PORT='{pool_port or agent.pool_port}'\nAIPM_PROCESSOR_PORT='{agent.processor_port}'\n"
        f"AIPM_AGENT_TOKEN_SECRET_ID='aipm/{STAGE}/agent-token'\nAWS_REGION='us-east-1'\n# a comment\n"
    )
    return path


def test_reports_both_ports_health_without_the_token(stack: LocalStack, tmp_path: Path) -> None:
    code, report, raw = hostcheck(stack, agent_env_file(stack, tmp_path / "agent.env"))

    assert code == 0, raw
    assert report["errors"] == [] and report["agentId"] == "local-agent-1"
    pool = report["pool"]
    assert isinstance(pool, dict) and len(pool["workers"]) == 2 and pool["status"]
    assert isinstance(report["processor"], dict) and report["processor"]["status"] == "ok"
    assert stack.agent_token not in raw

    lines = _status_lines("i-0123", "10.0.0.5", "Success", report, "")
    assert lines[0] == "host i-0123 (10.0.0.5): SSM command Success"
    assert lines[1].startswith("  systemd aipm-agent: ")
    assert lines[2].startswith("  pool :8081 ") and "2 slot(s), 2 ready" in lines[2]
    assert lines[-1].startswith("  processor :8082 ok")


def test_a_port_that_does_not_answer_is_a_problem(stack: LocalStack, tmp_path: Path) -> None:
    from aipm.local.moto_server import free_port

    code, report, _ = hostcheck(stack, agent_env_file(stack, tmp_path / "agent.env", pool_port=free_port()))
    assert code == 1
    assert report["pool"] is None
    assert any("pool port 127.0.0.1:" in str(e) for e in report["errors"])  # type: ignore[attr-defined]
    lines = _status_lines("i-0123", None, "Success", report, "")
    assert any(line.startswith("  PROBLEM: pool port") for line in lines)


def test_a_missing_env_file_is_reported(stack: LocalStack, tmp_path: Path) -> None:
    code, report, _ = hostcheck(stack, tmp_path / "absent.env")
    assert code == 1 and "cannot read" in str(report["errors"])
