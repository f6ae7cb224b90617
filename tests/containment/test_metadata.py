"""The instance metadata service is out of the sandbox's reach: a stand-in listener on 169.254.169.254 in a
network namespace this test makes (`unshare --net`; with a user namespace when not root), reachable from
that namespace outside the sandbox, refused from inside it (the sandbox's own empty network namespace).

A profile with `network = "host"` (a CLI that must reach its model service) shares the host's network; in
the cloud the host firewall blocks the metadata service for the CLI's user (docs/threat-model.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def namespace_command() -> list[str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("network namespaces cannot be made here: unshare(1) or ip(8) is missing")
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--"]


def test_the_metadata_stand_in_answers_outside_the_sandbox_and_not_inside(tmp_path: Path) -> None:
    command = [*namespace_command(), sys.executable, "-m", "tests.containment.netns_metadata", str(tmp_path)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if run.returncode != 0 and "Operation not permitted" in run.stderr:
        pytest.skip(f"network namespaces cannot be made here: {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert (
        results["outside"] == "aipm-instance-role"
    )  # the stand-in works: the refusal below is the sandbox's
    assert "aipm-instance-role" not in results["sandbox"]
    assert "refused:" in results["sandbox"] and "unreachable" in results["sandbox"]
