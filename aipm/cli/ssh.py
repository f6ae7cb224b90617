"""SSH to an agent host through SSM: paramiko, ProxyCommand `aws ssm start-session` (AWS-StartSSHSession).

For when a Session Manager shell is not enough (file copies, port juggling, tools that need a real SSH
session). The host needs sshd running and the person's public key in the login user's authorized_keys;
no SSH port is open: the byte stream goes through SSM.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, TextIO

import paramiko

from aipm.cli.errors import aws_error

DEFAULT_USER = "ec2-user"
CONNECT_TIMEOUT_S = 30.0
BUFFER = 32 * 1024


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


def connect(
    host_alias: str,
    proxy_argv: Sequence[str],
    *,
    user: str = DEFAULT_USER,
    key_filename: str | None = None,
    known_hosts: Path | None = None,
    accept_new_host_key: bool = False,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> paramiko.SSHClient:
    """An authenticated SSH client whose transport runs through `proxy_argv` (a command, argument list).

    The host key is checked against `known_hosts` under `host_alias` (the instance id); an unknown key is
    refused unless `accept_new_host_key` (then it is saved there, like OpenSSH's `accept-new`). A changed
    key is always refused. Raises CliError(AWS) with what to do.
    """
    known = known_hosts or default_known_hosts()
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    if accept_new_host_key:
        known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        known.touch(mode=0o600, exist_ok=True)
    if known.exists():
        client.load_host_keys(str(known))
    client.set_missing_host_key_policy(
        paramiko.AutoAddPolicy() if accept_new_host_key else paramiko.RejectPolicy()
    )
    pkey = _load_key(key_filename) if key_filename else None
    # paramiko splits the command line with shlex and starts it without a shell.
    proxy = paramiko.ProxyCommand(shlex.join(proxy_argv))
    try:
        client.connect(
            host_alias,
            username=user,
            pkey=pkey,
            sock=proxy,
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            look_for_keys=pkey is None,
            allow_agent=True,
        )
    except paramiko.BadHostKeyException as err:
        proxy.close()
        raise aws_error(
            f"the host key of {host_alias} has CHANGED ({err.key.get_name()})",
            hint=f"if the host was replaced, remove its line from {known} and connect with "
            "--accept-new-host-key",
        ) from None
    except paramiko.SSHException as err:
        proxy.close()
        if "not found in known_hosts" in str(err):
            raise aws_error(
                f"{host_alias} is not in {known}",
                hint="connect once with --accept-new-host-key to trust and save its host key",
            ) from None
        if isinstance(err, paramiko.AuthenticationException):
            raise aws_error(
                f"SSH authentication as {user} failed",
                hint="is your public key in ~" + user + "/.ssh/authorized_keys on the host? "
                "(--identity picks the key; see the README's Operations runbook)",
            ) from None
        raise aws_error(
            f"SSH over SSM failed: {err}",
            hint="is sshd running on the host, and may your role start AWS-StartSSHSession sessions?",
        ) from None
    except OSError as err:
        proxy.close()
        raise aws_error(f"SSH over SSM failed: {err}") from None
    return client


def _load_key(path: str) -> paramiko.PKey:
    """The private key in `path` (any type paramiko knows); passphrase-protected keys belong in ssh-agent."""
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise aws_error(
            f"the key {path} is protected by a passphrase", hint="add it to ssh-agent (ssh-add) and omit -i"
        ) from None
    except (OSError, paramiko.SSHException, ValueError) as err:
        raise aws_error(f"cannot load the key {path}: {err}") from None


def run_command(client: paramiko.SSHClient, command: str, out: TextIO, err: TextIO) -> int:
    """Run one command; stream its output; return its exit status."""
    transport = client.get_transport()
    assert transport is not None
    channel = transport.open_session()
    channel.exec_command(command)
    return _pump(channel, stdin=None, out=out, err=err)


def interactive(client: paramiko.SSHClient, out: TextIO, err: TextIO) -> int:
    """A login shell. On a terminal: a PTY in raw mode; with piped input: the shell reads the pipe."""
    transport = client.get_transport()
    assert transport is not None
    channel = transport.open_session()
    stdin = sys.stdin
    if stdin.isatty():
        size = shutil.get_terminal_size()
        channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
        channel.invoke_shell()
        return _raw_terminal(channel, stdin)
    channel.invoke_shell()
    return _pump(channel, stdin=stdin, out=out, err=err)


def _pump(channel: paramiko.Channel, *, stdin: IO[str] | None, out: TextIO, err: TextIO) -> int:
    fd = stdin.fileno() if stdin is not None else None
    watch: list[Any] = [channel] + ([fd] if fd is not None else [])
    while True:
        readable, _, _ = select.select(watch, [], [], 0.5)
        if channel in readable or channel.recv_ready() or channel.recv_stderr_ready():
            while channel.recv_stderr_ready():
                err.write(channel.recv_stderr(BUFFER).decode(errors="replace"))
            data = channel.recv(BUFFER) if channel.recv_ready() else b""
            if data:
                out.write(data.decode(errors="replace"))
                out.flush()
            elif channel.closed or channel.eof_received:
                break
        if fd is not None and fd in readable:
            chunk = os.read(fd, BUFFER)
            if chunk:
                channel.sendall(chunk)
            else:
                channel.shutdown_write()
                watch.remove(fd)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
    while channel.recv_stderr_ready():
        err.write(channel.recv_stderr(BUFFER).decode(errors="replace"))
    out.flush()
    err.flush()
    return channel.recv_exit_status()


def _raw_terminal(channel: paramiko.Channel, stdin: TextIO) -> int:  # pragma: no cover - needs a real TTY
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)

    def resize(_signum: int, _frame: object) -> None:
        size = shutil.get_terminal_size()
        channel.resize_pty(width=size.columns, height=size.lines)

    previous = signal.signal(signal.SIGWINCH, resize)
    watch: list[Any] = [channel, fd]
    try:
        tty.setraw(fd)
        while True:
            readable, _, _ = select.select(watch, [], [])
            if channel in readable:
                data = channel.recv(BUFFER)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in readable:
                chunk = os.read(fd, BUFFER)
                if not chunk:
                    break
                channel.sendall(chunk)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
    return channel.recv_exit_status()
