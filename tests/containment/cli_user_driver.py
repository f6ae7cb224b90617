"""Run by tests/containment/test_cli_user.py as the test's agent user with exactly the capabilities of the
agent's systemd unit (ambient): drives a real slot sandbox whose CLI runs as the CLI user, and prints what
it found as one JSON object. Usage: `python -m tests.containment.cli_user_driver <work dir> <cli user>`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ec2_agent.followup import write_task_md
from ec2_agent.sandbox import CliUser, Sandbox, SandboxPolicy, remove_tree

# Inside the sandbox: who it runs as, its capabilities, what of the agent it can read, and two
# processes that must not outlive the job; the main process then waits on its input.
SCRIPT = """
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
grep -E '^Cap(Prm|Eff|Inh|Amb)' /proc/self/status
cat /agent-private/secret.txt 2>&1 | head -1
ls /agent-private 2>&1 | head -1
echo cli-wrote > /workspace/cli.txt
mkdir -p /workspace/locked && echo inside > /workspace/locked/file
chmod 000 /workspace/locked/file /workspace/locked
echo home > "$HOME/home.txt"
sleep 300 &
setsid sleep 301 &
echo ready
exec cat
"""

DEEP = """
import os
for top in (os.environ["HOME"], "/workspace"):
    os.chdir(top)
    for _ in range(2000):
        os.mkdir("d")
        os.chdir("d")
    os.chdir(top + "/d/d")
    os.chmod("d", 0)
"""


def main(work: Path, cli_name: str) -> dict[str, Any]:
    cli = CliUser.lookup(cli_name)
    private = work / "agent-private"
    private.mkdir(mode=0o700)
    (private / "secret.txt").write_text("the agent's secret\n")
    (private / "secret.txt").chmod(0o600)
    box = Sandbox(
        work / "slots" / "1",
        work / "homes" / "cli",
        SandboxPolicy(network="none", ro_binds=((str(private), "/agent-private"),)),
        cli_user=cli,
    )
    box.start()
    (box.tree / "checked-out.txt").write_text("from the branch\n")
    cli.hand_over(box.tree)
    cli.share_root(box.tree)  # as Workspace.prepare leaves it
    argv, env = box.command(["/bin/sh", "-c", SCRIPT], {})
    found: dict[str, Any] = {}
    with subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        lines = []
        for line in proc.stdout:
            if line.strip() == "ready":
                break
            lines.append(line.rstrip("\n"))
        found["inside"] = lines
        processes = box.processes()
        found["uids"] = sorted({_uid(p.pid) for p in processes} | {_uid(proc.pid)})
        found["ns_pids_before"] = sorted(p.ns_pid for p in processes)
        found["killed"] = len(box.kill_all_but_main())
        found["ns_pids_after"] = sorted(p.ns_pid for p in box.processes())
        write_task_md(box.tree, b"a brief from the agent\n")  # between turns, into the CLI's tree
        found["task_md_owner"] = (box.tree / "TASK.md").stat().st_uid
        found["home_changed"] = box.home_changed()
        found["home_owner_after_compare"] = box.home.stat().st_uid
        box.restore_home(["home.txt"])
        found["home_owner_after_restore"] = box.home.stat().st_uid
        cli.take_back(box.home)  # the home is the CLI user's (mode 0700): the agent looks as its owner
        found["home_restored"] = not (box.home / "home.txt").exists()
        cli.hand_over(box.home)
        cli.take_back(box.tree)
        found["locked_file"] = (box.tree / "locked" / "file").read_text()
        found["tree_owner"] = box.tree.stat().st_uid
        again, again_env = box.command(
            ["/bin/sh", "-c", "echo again > /workspace/cli.txt; touch /workspace/new; echo status=$?"], {}
        )
        rewrite = subprocess.run(
            again,
            env=again_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        found["after_take_back"] = rewrite.stdout + rewrite.stderr
        found["cli_txt"] = (box.tree / "cli.txt").read_text()
        box.stop()
        proc.stdin.close()
        found["main_exit"] = proc.wait(timeout=10)
    found["left"] = [p.pid for p in box.processes()]
    box.reset_home()
    found["home_reset_owner"] = box.home.stat().st_uid
    # The CLI makes trees 2,000 levels deep in its home and its work tree, each with a folder it locks
    # (mode 000) near the top: the home counts as changed (too deep to compare), and both are removed.
    cli.hand_over(box.tree)  # the next job's tree
    cli.share_root(box.tree)
    argv, env = box.command(["/usr/bin/python3", "-c", DEEP], {})
    made = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    found["deep_made"] = made.stderr[-300:] if made.returncode else 0
    found["deep_home_changed"] = box.home_changed()
    box.reset_home()
    remove_tree(box.tree / "d", owner=cli)
    cli.take_back(box.home)
    found["deep_left"] = [(box.home / "d").exists(), (box.tree / "d").exists()]
    cli.hand_over(box.home)
    return found


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
