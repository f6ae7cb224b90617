"""`aipm ops shell`: paramiko over a ProxyCommand, against a REAL OpenSSH server on loopback.

The stack outputs come from the moto server; `aws` on PATH is a stand-in that records its arguments and
relays the byte stream to sshd, as `aws ssm start-session --document-name AWS-StartSSHSession` does.
Everything else — the CLI, paramiko, the host key checks, authentication, the remote command — is real.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from aipm.cli.errors import Exit
from aipm.local.moto_server import free_port
from tests.cli.conftest import run
from tests.cli.ops_support import Deployed, deploy_single_host, fake_aws_cli, recorded
from tests.cli.test_ops import aws_env  # noqa: F401 - fixture

SSHD = Path("/usr/sbin/sshd")


@dataclass
class Sshd:
    port: int
    user: str
    key_file: Path
    host_key: paramiko.RSAKey


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing: run `make sysdeps` (installs Debian's openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    host_key = paramiko.RSAKey.generate(2048)
    host_key.write_private_key_file(str(root / "host_rsa"))
    (root / "host_rsa").chmod(0o600)
    user_key = paramiko.RSAKey.generate(2048)
    user_key.write_private_key_file(str(root / "user_rsa"))
    (root / "authorized_keys").write_text(f"ssh-rsa {user_key.get_base64()} aipm-test\n")
    user = getpass.getuser()
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_rsa'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (root / "sshd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.05)
        yield Sshd(port=port, user=user, key_file=root / "user_rsa", host_key=host_key)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@dataclass
class Setup:
    deployed: Deployed
    calls: Path
    known_hosts: Path
    sshd: Sshd

    def shell(self, *extra: str) -> list[str]:
        return [
            "ops", "--stack", self.deployed.stack, "shell", "-l", self.sshd.user,
            "-i", str(self.sshd.key_file), "--known-hosts", str(self.known_hosts), *extra,
        ]  # fmt: skip


@pytest.fixture
def setup(
    aws_env: str,  # noqa: F811
    aws_client_factory: Any,
    sshd: Sshd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    deployed = deploy_single_host(aws_client_factory)
    calls = tmp_path / "aws-calls"
    bin_dir = fake_aws_cli(tmp_path / "bin", calls, relay_port=sshd.port)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return Setup(deployed, calls, tmp_path / "known_hosts", sshd)


def test_a_command_runs_over_ssh_through_the_session_proxy(setup: Setup) -> None:
    unknown = run(*setup.shell("--command", "echo hi"))
    assert unknown.code == Exit.AWS
    assert "is not in" in unknown.err and "--accept-new-host-key" in unknown.err

    first = run(
        *setup.shell("--accept-new-host-key", "--command", "echo hello-from-sshd; whoami; echo oops >&2")
    )
    assert first.code == 0, first.err
    assert first.out == f"hello-from-sshd\n{setup.sshd.user}\n"
    assert "oops" in first.err

    instance = setup.deployed.instance_ids[0]
    saved = setup.known_hosts.read_text().split()
    assert saved[:2] == [instance, "ssh-rsa"] and saved[2] == setup.sshd.host_key.get_base64()

    again = run(*setup.shell("--command", "exit 7"))  # the host key is known now
    assert again.code == 7

    assert recorded(setup.calls)[-1] == [
        "ssm", "start-session", "--target", instance, "--document-name", "AWS-StartSSHSession",
        "--parameters", json.dumps({"portNumber": ["22"]}, separators=(",", ":")), "--region", "us-east-1",
    ]  # fmt: skip


def test_a_changed_host_key_is_refused(setup: Setup) -> None:
    other = paramiko.RSAKey.generate(1024)
    setup.known_hosts.write_text(f"{setup.deployed.instance_ids[0]} ssh-rsa {other.get_base64()}\n")
    result = run(*setup.shell("--accept-new-host-key", "--command", "echo never"))
    assert result.code == Exit.AWS
    assert "has CHANGED" in result.err and "never" not in result.out


def test_a_key_the_host_does_not_know_is_refused(setup: Setup, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_rsa"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(stranger))
    argv = setup.shell("--accept-new-host-key", "--command", "echo never")
    argv[argv.index(str(setup.sshd.key_file))] = str(stranger)
    result = run(*argv)
    assert result.code == Exit.AWS
    assert f"SSH authentication as {setup.sshd.user} failed" in result.err


def test_an_interactive_shell_reads_piped_input(setup: Setup) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aipm.cli", *setup.shell("--accept-new-host-key")],
        input="echo piped-$((6*7))\nexit 3\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert "piped-42" in done.stdout, done.stderr
    assert done.returncode == 3
