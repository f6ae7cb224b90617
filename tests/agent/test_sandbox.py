"""The slot sandbox with the real bubblewrap: what a process inside can see, write, reach and leave behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec2_agent.sandbox import (
    HOME,
    WORKSPACE,
    CliUser,
    Sandbox,
    SandboxFault,
    SandboxLimits,
    SandboxPolicy,
    snapshot,
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    seed = tmp_path / "seed"
    (seed / ".config" / "cli").mkdir(parents=True)
    (seed / ".config" / "cli" / "login.json").write_text('{"key": "model-service-key"}')
    box = Sandbox(
        tmp_path / "work" / "slots" / "1",
        tmp_path / "work" / "homes" / "cli",
        SandboxPolicy(env_allow=("CLI_MODEL_KEY",), home_seed=seed, network="none"),
    )
    box.start()
    yield box
    box.stop()


def run(box: Sandbox, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv, outer = box.command(["/bin/sh", "-c", script], env or {})
    return subprocess.run(argv, env=outer, capture_output=True, text=True, timeout=30, check=False)


def test_the_environment_is_the_allow_list_only(sandbox: Sandbox) -> None:
    env = {
        "CLI_MODEL_KEY": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AIPM_GIT_TOKEN": "t",
        "GITHUB_TOKEN": "g",
        "LANG": "C.UTF-8",
        "OTHER": "x",
    }
    seen = dict(line.split("=", 1) for line in run(sandbox, "env", env).stdout.splitlines() if "=" in line)
    assert seen["CLI_MODEL_KEY"] == "k" and seen["HOME"] == HOME and seen["PWD"] == WORKSPACE
    assert not {"AWS_SECRET_ACCESS_KEY", "AIPM_GIT_TOKEN", "GITHUB_TOKEN", "OTHER"} & set(seen)


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AIPM_AGENT_TOKEN", "GITHUB_TOKEN", "GIT_ASKPASS"])
def test_a_policy_may_not_allow_the_agents_credentials(name: str) -> None:
    with pytest.raises(ValueError, match="may not be passed"):
        SandboxPolicy(env_allow=(name,))


def test_only_the_tree_home_and_tmp_are_writable(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "work" / "git" / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_text("agent-only")
    result = run(
        sandbox,
        f"echo w > {WORKSPACE}/a && echo h > {HOME}/b && echo t > /tmp/c && echo ok;"
        f"cat {secret} 2>&1; ls {tmp_path / 'work'} 2>&1;"
        "{ echo x > /usr/x; } 2>&1; { echo x > /etc/passwd; } 2>&1; ls /etc/shadow 2>&1",
    )
    out = result.stdout
    assert out.startswith("ok"), result
    assert "agent-only" not in out
    assert (sandbox.tree / "a").read_text() == "w\n" and (sandbox.home / "b").read_text() == "h\n"
    assert out.count("Read-only file system") == 2
    assert "No such file" in out  # neither the work dir nor /etc/shadow exists inside


def test_a_cli_installed_under_tmp_is_mounted_over_the_sandboxs_tmp(tmp_path: Path) -> None:
    """A checkout (and its venv) under /tmp, as `git clone … /tmp/x && make demo` makes it: the CLI's
    read-only mount there must not be hidden by the sandbox's own tmpfs /tmp (it was: every start failed
    with "No such file or directory")."""
    install = Path(tempfile.mkdtemp(prefix="aipm-test-cli-", dir="/tmp"))
    (install / "cli").write_text("#!/bin/sh\necho cli-ran\n")
    (install / "cli").chmod(0o755)
    box = Sandbox(
        tmp_path / "work" / "slots" / "1",
        tmp_path / "work" / "homes" / "cli",
        SandboxPolicy(ro_binds=((str(install), str(install)),), network="none"),
    )
    box.start()
    try:
        argv, outer = box.command([str(install / "cli")], {})
        result = subprocess.run(argv, env=outer, capture_output=True, text=True, timeout=30, check=False)
        assert result.stdout == "cli-ran\n", result
        assert run(box, "echo t > /tmp/t && cat /tmp/t").stdout == "t\n"  # /tmp is still writable
    finally:
        box.stop()
        shutil.rmtree(install)


def test_the_agents_processes_are_invisible(sandbox: Sandbox) -> None:
    pids = run(sandbox, "ls /proc | grep -E '^[0-9]+$'").stdout.split()
    assert sorted(int(p) for p in pids) == sorted(int(p) for p in pids if int(p) < 10)
    assert str(os.getpid()) not in pids or os.getpid() < 10
    status = run(sandbox, f"cat /proc/{os.getpid()}/environ 2>&1 || echo gone")
    assert "gone" in status.stdout


def test_no_capabilities_and_no_nested_user_namespace(sandbox: Sandbox) -> None:
    out = run(sandbox, "grep CapEff /proc/self/status; unshare -U true 2>&1 || echo refused").stdout
    assert "CapEff:\t0000000000000000" in out
    assert "refused" in out


def test_no_network_when_the_policy_says_none(sandbox: Sandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        script = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' 2>&1"
        assert "Connection refused" in run(sandbox, script).stdout
    finally:
        listener.close()


def test_between_jobs_only_the_main_process_survives(sandbox: Sandbox) -> None:
    argv, env = sandbox.command(
        ["/bin/sh", "-c", "setsid sleep 300 & (sleep 300 &) ; echo started; exec sleep 300"], {}
    )
    main = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert main.stdout is not None and main.stdout.readline() == "started\n"
        # Settled: the main process has exec'd sleep and both background sleeps run (the subshell that
        # starts one of them is gone), so exactly two processes are to be killed.
        while sorted(_comm(p.pid) for p in sandbox.processes() if p.ns_pid > 1) != ["sleep"] * 3:
            time.sleep(0.02)
        before = sandbox.processes()
        killed = sandbox.kill_all_but_main()
        assert len(killed) == 2, before
        assert sorted(p.ns_pid for p in sandbox.processes()) == [1, 2]
        assert main.poll() is None
    finally:
        sandbox.stop()
        main.wait(timeout=5)
    assert sandbox.processes() == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_a_restarted_agent_reaps_the_sandboxes_its_slot_left(sandbox: Sandbox, tmp_path: Path) -> None:
    argv, env = sandbox.command(["/bin/sh", "-c", "setsid sleep 300 & exec sleep 300"], {})
    orphan = subprocess.Popen(argv, env=env, start_new_session=True)
    while len(sandbox.processes()) < 3:
        pass
    later = Sandbox(sandbox.slot_dir, sandbox.pristine_home, sandbox.policy)
    later.start()
    assert orphan.wait(timeout=5) != 0
    assert sandbox.processes() == [] and later.processes() == []


def test_the_home_is_compared_with_its_pristine_copy(sandbox: Sandbox) -> None:
    assert not sandbox.home_changed()
    assert (sandbox.home / ".config" / "cli" / "login.json").is_file()
    run(sandbox, f"echo '[core] fsmonitor = evil' > {HOME}/.gitconfig")
    assert sandbox.home_changed()
    sandbox.reset_home()
    assert not sandbox.home_changed()
    run(sandbox, f"chmod 777 {HOME}/.config")
    assert sandbox.home_changed()
    sandbox.reset_home()
    run(sandbox, f"ln -s /etc/passwd {HOME}/link")
    assert sandbox.home_changed()
    sandbox.reset_home()
    assert snapshot(sandbox.home) == snapshot(sandbox.pristine_home)


def test_missing_bubblewrap_is_a_slot_fault(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "s", tmp_path / "p", SandboxPolicy(), bwrap=str(tmp_path / "no-bwrap"))
    with pytest.raises(SandboxFault, match="bubblewrap is not installed"):
        box.start()


@pytest.mark.parametrize("name", ["root", "no-such-user-aipm"])
def test_the_cli_user_must_exist_and_not_be_root(name: str) -> None:
    with pytest.raises(SandboxFault, match="CLI user"):
        CliUser.lookup(name)


def test_the_sandbox_sets_its_limits_before_the_cli(sandbox: Sandbox) -> None:
    """The CLI runs under the limits (both soft and hard: it cannot raise them) and is still PID 2."""
    limits = SandboxLimits()
    out = run(sandbox, "echo $$; cat /proc/self/limits; df -k /tmp | tail -1").stdout
    pid, rest = out.split("\n", 1)
    assert pid == "2"
    rows = {line[:26].strip(): line[26:].split()[:2] for line in rest.splitlines()[1:17]}
    assert rows["Max processes"] == [str(limits.processes_max)] * 2
    assert rows["Max file size"] == [str(limits.file_size_mib << 20)] * 2
    assert rows["Max data size"] == [str(limits.process_memory_mib << 20)] * 2
    assert int(rest.splitlines()[-1].split()[1]) == limits.tmp_size_mib * 1024
