"""The CLI as its own unprivileged user (the cloud's `aipm-cli`), driven by an agent that has exactly the
capabilities of its systemd unit: the sandbox's processes run with the CLI user's uid and no capability,
cannot read the agent's files, are found, killed and reaped by the agent; the tree and home are the CLI
user's during the job and the agent's (unwritable by the CLI) once taken back.

Needs root to create the two users and start the agent user with its ambient capabilities (CI runs
tests/containment as root); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.containment.cli_user import CLI_USER, ensure_user, reachable_dir

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates users and starts one with capabilities: root only"),
]

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "cdk" / "host" / "aipm-agent.service"
AGENT_USER = "aipm-agent-test"


def unit_capabilities() -> list[str]:
    """The ambient capabilities the agent's unit grants, e.g. ['setuid', 'setgid', ...]."""
    text = UNIT.read_text()
    match = re.search(r"^AmbientCapabilities=(.+)$", text, re.MULTILINE)
    assert match, "the unit grants no ambient capabilities"
    bounding = re.search(r"^CapabilityBoundingSet=(.+)$", text, re.MULTILINE)
    assert bounding and bounding.group(1).split() == match.group(1).split(), "bounding set = ambient set"
    return [cap.removeprefix("CAP_").lower() for cap in match.group(1).split()]


def open_path_to(path: Path) -> None:
    """Let other users traverse (never list) every directory down to `path`, as the host's do."""
    for directory in [*reversed(path.parents), path]:
        directory.chmod(directory.stat().st_mode | 0o001)


def run_driver(work: Path) -> dict[str, Any]:
    agent = ensure_user(AGENT_USER)
    ensure_user(CLI_USER)
    work.mkdir()
    os.chown(work, agent.pw_uid, agent.pw_gid)
    open_path_to(work)
    caps = ",".join(f"+{cap}" for cap in unit_capabilities())
    python = Path(sys.executable)
    open_path_to(python.parent)
    as_agent = [
        "/usr/bin/setpriv", f"--reuid={agent.pw_uid}", f"--regid={agent.pw_gid}", "--clear-groups",
        f"--inh-caps={caps}", f"--ambient-caps={caps}", "--",
    ]  # fmt: skip
    proc = subprocess.run(
        [*as_agent, str(python), "-m", "tests.containment.cli_user_driver", str(work), CLI_USER],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(work)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return found


def test_the_cli_runs_as_its_own_user_and_the_agent_keeps_control() -> None:
    with reachable_dir("aipm-cli-user-") as scratch:
        found = run_driver(scratch / "work")
    cli = pwd.getpwnam(CLI_USER)
    agent = pwd.getpwnam(AGENT_USER)
    inside = "\n".join(found["inside"])
    # Inside the sandbox: the CLI user's uid (mapped to itself), no supplementary group, no capability.
    assert f"uid={cli.pw_uid} gid={cli.pw_gid} groups={cli.pw_gid}\n" in inside + "\n", inside
    for name in ("CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert re.search(rf"^{name}:\s+0+$", inside, re.MULTILINE), inside
    # The agent's own files are not readable even where mounted.
    assert inside.count("Permission denied") == 2, inside
    assert "the agent's secret" not in inside
    # Seen from the host, every process of the sandbox (the outer bwrap too) is the CLI user's.
    assert found["uids"] == [cli.pw_uid], found
    # The agent finds them by namespace and kills all but the init and the CLI's main process.
    assert found["ns_pids_before"][:2] == [1, 2] and len(found["ns_pids_before"]) >= 4, found
    assert found["killed"] >= 2 and found["ns_pids_after"] == [1, 2], found
    # The tree's top stays shared: the agent replaces TASK.md between the CLI's turns.
    assert found["task_md_owner"] == agent.pw_uid
    # The home: compared (a change seen), restored in place, and the CLI user's again after each step.
    assert found["home_changed"] is True and found["home_restored"] is True
    assert found["home_owner_after_compare"] == cli.pw_uid == found["home_owner_after_restore"]
    # Taken back, the tree is the agent's: what the CLI locked away is readable, the CLI can write nothing.
    assert found["locked_file"] == "inside\n" and found["tree_owner"] == agent.pw_uid
    assert "Permission denied" in found["after_take_back"], found["after_take_back"]
    assert found["cli_txt"] == "cli-wrote\n"
    # Stopping the slot kills everything of the CLI user's sandbox; the home is reset for the next one.
    assert found["main_exit"] != 0 and found["left"] == []
    assert found["home_reset_owner"] == cli.pw_uid
    # Trees 2,000 levels deep with a locked folder: the home counts as changed, both are removed.
    assert found["deep_made"] == 0, found["deep_made"]
    assert found["deep_home_changed"] is True, found
    assert found["deep_left"] == [False, False], found
