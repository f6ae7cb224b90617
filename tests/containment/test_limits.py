"""Resource limits per sandbox, through the real local stack: a hostile CLI (`hostile_cli.sh`) runs a
fork bomb, a memory hog and disk fillers from the repository's `attack.sh`. Each is stopped by its limit,
the job's outcome is truthful (completed with what the limits did; a bomb that never ends times out with
the reason), and the slot stays healthy: the next job on it runs and finds nothing left.

As root the stack's agent starts the sandbox as the CLI's own user (`aipm-cli`, created if missing), as
on the cloud host: the kernel exempts uid 0 from the process limit, and this also runs the whole job path
(checkout handed over, tree taken back, commit) with the CLI user. Unprivileged (`.ci/run`'s runuser pass)
the sandbox runs as that user itself.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from aipm.local.stack import DEMO_OWNER, DEMO_REPO, LocalStack, StackOptions
from tests.containment.cli_user import CLI_USER, ensure_user, reachable_dir
from tests.containment.test_hostile_cli import HERE, PROFILE, git, run_job

pytestmark = pytest.mark.e2e

PROCESSES_MAX = 64
FILE_SIZE_MIB = 8
PROCESS_MEMORY_MIB = 256
TMP_SIZE_MIB = 16
JOB_TIMEOUT_S = 25

LIMITS_ATTACK = f"""#!/bin/sh
mkdir -p /workspace/limits
cd /workspace/limits
python3 - > processes.txt 2>&1 <<'EOF'
import os, time
started = 0
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError as err:
        print(f"fork refused after {{started}}: {{err.strerror}}")
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    started += 1
else:
    print(f"all {{started}} forks succeeded")
EOF
python3 -c 'bytearray({PROCESS_MEMORY_MIB * 2} << 20); print("allocated")' > memory.txt 2>&1
(head -c {FILE_SIZE_MIB * 3}M /dev/zero > /workspace/big.bin) 2> file-size.txt
stat -c %s /workspace/big.bin >> file-size.txt
rm -f /workspace/big.bin
i=0
while [ $i -lt {TMP_SIZE_MIB * 2} ]; do
    head -c 1M /dev/zero > /tmp/fill.$i 2>> tmp.txt || break
    i=$((i + 1))
done
echo "tmp files written: $i" >> tmp.txt
rm -f /tmp/fill.*
echo done > done.txt
"""

ENDLESS_BOMB = """#!/bin/sh
python3 - <<'EOF'
import os, time
while True:
    try:
        if os.fork() == 0:
            while True:
                time.sleep(1)
    except OSError:
        time.sleep(0.01)
EOF
"""

NEXT_JOB = """#!/bin/sh
id -u > /workspace/next-uid.txt
ls /proc | grep -c '^[0-9]' > /workspace/next-processes.txt
ls /tmp > /workspace/next-tmp.txt
echo next > /workspace/next.txt
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    env = {
        "AIPM_GENERIC_PROFILE": json.dumps(PROFILE),
        "AIPM_SANDBOX_RO_BINDS": json.dumps([str(HERE)]),
        "AIPM_SANDBOX_NETWORK": "none",
        "AIPM_SANDBOX_PROCESSES_MAX": str(PROCESSES_MAX),
        "AIPM_SANDBOX_FILE_SIZE_MIB": str(FILE_SIZE_MIB),
        "AIPM_SANDBOX_PROCESS_MEMORY_MIB": str(PROCESS_MEMORY_MIB),
        "AIPM_SANDBOX_TMP_SIZE_MIB": str(TMP_SIZE_MIB),
    }
    with ExitStack() as cleanup:
        if os.geteuid() == 0:
            ensure_user(CLI_USER)
            env["AIPM_SANDBOX_CLI_USER"] = CLI_USER
            root = cleanup.enter_context(reachable_dir("aipm-limits-"))
        else:
            root = tmp_path_factory.mktemp("limits")
        home = root / "agent-home"
        home.mkdir()
        env["HOME"] = str(home)
        options = StackOptions(
            pool_size=1, cli_profile="generic", sweep_interval_s=1, job_timeout_s=JOB_TIMEOUT_S, agent_env=env
        )
        with LocalStack(root, options) as running:
            yield running


def show(stack: LocalStack, job: dict[str, Any], path: str) -> str:
    return git(stack, "show", f"{job['commitSha']}:{path}")


def assert_slot_healthy(stack: LocalStack, title: str) -> None:
    """The next job on the (only) slot runs, with no process and no /tmp file of the last one."""
    job = run_job(stack, title, NEXT_JOB)
    assert job["status"] == "completed", (job.get("error"), job.get("outputTail"))
    assert show(stack, job, "next.txt") == "next\n"
    expected_uid = pwd.getpwnam(CLI_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert show(stack, job, "next-uid.txt") == f"{expected_uid}\n"  # inside: mapped to the outer uid
    # The hostile CLI's own log; and, for a checkout under /tmp, the top folder of the read-only bind of
    # this directory (bwrap makes the mount point's parents inside the sandbox's /tmp).
    mount_point = {HERE.parts[2]} if HERE.parts[1] == "tmp" else set()
    assert set(show(stack, job, "next-tmp.txt").split()) <= {"attack.log"} | mount_point
    # init, the CLI (after its launchers exec'd it), the attack's shell, ls and grep: nothing else.
    assert int(show(stack, job, "next-processes.txt")) <= 6, show(stack, job, "next-processes.txt")


def test_each_limit_stops_its_attack_and_the_job_stays_truthful(stack: LocalStack) -> None:
    job = run_job(stack, "Limits", LIMITS_ATTACK)
    assert job["status"] == "completed", job
    assert show(stack, job, "limits/done.txt") == "done\n"
    processes = show(stack, job, "limits/processes.txt")
    assert "Resource temporarily unavailable" in processes, processes
    started = int(processes.split("after ")[1].split(":")[0])
    assert 0 < started < PROCESSES_MAX, processes
    assert "MemoryError" in show(stack, job, "limits/memory.txt")
    file_size = show(stack, job, "limits/file-size.txt")
    assert file_size.splitlines()[-1] == str(FILE_SIZE_MIB << 20), file_size
    tmp = show(stack, job, "limits/tmp.txt")
    written = int(tmp.rsplit("tmp files written: ", 1)[1])
    assert "No space left on device" in tmp and TMP_SIZE_MIB - 2 <= written <= TMP_SIZE_MIB, tmp
    assert "big.bin" not in git(stack, "ls-tree", "-r", "--name-only", job["commitSha"])
    assert_slot_healthy(stack, "After limits")


def test_an_endless_fork_bomb_times_out_with_its_reason_and_the_slot_recovers(stack: LocalStack) -> None:
    job = run_job(stack, "Endless bomb", ENDLESS_BOMB)
    assert job["status"] == "timed_out", job
    assert f"did not finish within {JOB_TIMEOUT_S} s" in job["error"], job
    assert_slot_healthy(stack, "After the bomb")
    assert stack.forge.branches(DEMO_OWNER, DEMO_REPO)  # the forge still answers: the host was not starved
