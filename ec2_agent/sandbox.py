"""A bubblewrap (`bwrap`) sandbox per slot: the coding-agent CLI sees its work tree, its home and the system,
read-only, and nothing of the agent.

Layout inside (docs/sandbox-and-sessions.md): `/workspace` = `slots/<n>/tree` (read-write), `/home/cli` =
`slots/<n>/home` (read-write, seeded from the profile's pristine home), `/tmp` a tmpfs, `/usr` and a few
files of `/etc` read-only, the CLI's install directories read-only, `/proc` of the sandbox's own PID
namespace, `/dev` a minimal one. Never mounted: the rest of `AIPM_WORK_DIR` (the git store, the jobs' git
directories, other slots, the credential helper), the agent's home, its secrets.

Namespaces: user (with `--disable-userns`, so no nested one can regain capabilities), PID, IPC, UTS and
cgroup, network when the policy says `none`; every capability dropped (`--cap-drop ALL`: bwrap run as root
keeps them otherwise, measured with bubblewrap 0.8); `--die-with-parent`. The environment is built from the
policy's allow-list; names of the agent's own credentials are refused even when listed.

The CLI's own user (:class:`CliUser`, the cloud's `aipm-cli`, whose uid the host firewall confines): when
set, bwrap is started through `setpriv --reuid/--regid --clear-groups --inh-caps=-all --ambient-caps=-all`
(util-linux), so the sandbox runs as that user with no capability; the tree and the home are handed
over to it for the job (`CliUser.hand_over`: `chown -R --no-dereference`) and taken back before the agent
reads or removes them (`CliUser.take_back`: owned by the agent again, no group/other write, so the CLI can
no longer change what the agent commits). The agent needs CAP_SETUID/CAP_SETGID (setpriv), CAP_KILL
(signal the CLI user's processes) and CAP_CHOWN (hand over, take back): cdk/host/aipm-agent.service.

Limits (:class:`SandboxLimits`, per sandbox): the /tmp tmpfs's size (bwrap `--size`), and resource limits
set by `prlimit` (util-linux) inside the sandbox's user namespace, so the kernel counts its processes per
sandbox (RLIMIT_NPROC is charged to the user namespace's own uid: ucounts, Linux >= 5.14): processes
(RLIMIT_NPROC, threads included), a file's size (RLIMIT_FSIZE), a process's data memory (RLIMIT_DATA); the
CPU share by niceness (`nice`). The kernel exempts uid 0 from RLIMIT_NPROC: as root without a CLI user the
process limit does not hold (the cloud always has one).

A driver never spawns a CLI directly: it asks :meth:`Sandbox.command` for the wrapped argv and environment.
Processes are found by PID namespace: the outer `bwrap` process carries this sandbox's marker as its UTS
host name argument (a process inside cannot fake it: it cannot create processes in the agent's PID
namespace), and its child is the namespace's init. Sources: bwrap(1), pid_namespaces(7), proc(5) (`NSpid`).
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import hashlib
import io
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ec2_agent.faults import SlotFault
from ec2_agent.secret_screen import Screen, ScreenTooLarge

log = logging.getLogger(__name__)

BWRAP = "/usr/bin/bwrap"
WORKSPACE = "/workspace"
HOME = "/home/cli"
TRASH_PREFIX = ".trash-"  # emptied trees' entries wait here, beside the tree, to be deleted
RESTORE_ATTEMPTS = 5  # a home path the running CLI keeps changing is put back at most this often
RESTORE_PAUSE_S = 0.2
ARCHIVE_MAX_BYTES = 64 * 1024 * 1024  # saved sessions, unpacked
ARCHIVE_MAX_ENTRIES = 10_000
# A walk of a tree the CLI shapes (its home, saved sessions, the home's comparison with its pristine copy)
# refuses one deeper or larger than these (Python 3.11's os.walk and shutil.rmtree recurse: ~1,000 levels
# raised RecursionError); removal has no limit (the slot must recover from any tree).
WALK_MAX_DEPTH = 128
WALK_MAX_ENTRIES = 200_000
_REMOVE_HELD_DIRS = 64  # removal holds at most this many directory fds: deeper ones are moved up first
_MOVED_UP = ".deep-"  # the name a directory moved up into the removed tree's top gets
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
STAGING_PREFIX = ".unpack-"  # saved sessions are unpacked here, beside the home, then moved into it
SANDBOX_TMP = "/tmp"  # noqa: S108 - a tmpfs of the sandbox's own
# Always passed when the agent has them: the terminal and locale. Nothing else without the policy's word.
BASE_ENV = ("TERM", "COLORTERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# Never passed, whatever a policy lists: the agent's and the forge's credentials and the agent's settings.
FORBIDDEN_PREFIXES = ("AWS_", "AIPM_", "GITHUB_", "GH_", "GIT_", "SSH_", "BOTO", "AMAZON_", "ECS_")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Files of /etc a program needs to resolve names, users, certificates, libraries and time; never shadow,
# never the system's git or ssh configuration.
ETC_FILES = (
    "passwd", "group", "hosts", "host.conf", "resolv.conf", "nsswitch.conf", "gai.conf", "localtime",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "pki", "alternatives",
    "mime.types", "protocols", "services", "os-release", "inputrc", "terminfo",
)  # fmt: skip
_KILL_WAIT_S = 2.0
_KILL_ROUNDS = 50  # a fork bomb forks between listing and killing: list and kill again, this many times
SETPRIV = "/usr/bin/setpriv"
CHOWN = "/usr/bin/chown"
_CHOWN_TIMEOUT_S = 300
PRLIMIT = "/usr/bin/prlimit"
NICE = "/usr/bin/nice"
_MIB = 1024 * 1024
# On a pseudo-terminal of its own, the CLI becomes the terminal's foreground process group before it runs,
# so Ctrl-C reaches the CLI (and its tools) but not the outer bwrap, which would die of it and take the
# sandbox along (measured: bubblewrap 0.8 keeps SIGINT's default action).
_FOREGROUND = (
    "/usr/bin/python3", "-I", "-S", "-c",
    "import os, signal, sys\n"
    "os.setpgid(0, 0)\n"
    "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
    "if os.isatty(0):\n    os.tcsetpgrp(0, os.getpgrp())\n"
    "signal.signal(signal.SIGTTOU, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])",
)  # fmt: skip


class SandboxFault(SlotFault):
    """The slot's sandbox cannot be set up or cleaned (bwrap missing, home unreadable, a process that will
    not die). Slot-local: the job is handed back without using an attempt, and the slot is rebuilt."""


class WalkLimit(SandboxFault):
    """A tree the CLI shaped is deeper (WALK_MAX_DEPTH) or larger than a walk reads (:func:`walk_tree`):
    the tree's fault, not the slot's; a caller that can say so to the job (the commit) does."""


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox (the agent's configuration, `AIPM_SANDBOX_*`).

    `processes_max`: tasks (processes and threads) in the sandbox at once (RLIMIT_NPROC in its user
    namespace); `file_size_mib`: the largest file a process in it may write (RLIMIT_FSIZE: a larger write
    fails with EFBIG, the writer gets SIGXFSZ); `process_memory_mib`: a process's data memory (RLIMIT_DATA:
    heap and private writable mappings; a larger allocation fails with ENOMEM); `tmp_size_mib`: the size of
    its /tmp tmpfs (memory-backed; ENOSPC when full); `cpu_nice`: the niceness its processes run at (0-19;
    they cannot lower it). Sources: getrlimit(2), bwrap(1) `--size`, nice(1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    processes_max: int = Field(default=1024, ge=16, le=1_000_000)
    file_size_mib: int = Field(default=1024, ge=1, le=1024 * 1024)
    process_memory_mib: int = Field(default=4096, ge=64, le=1024 * 1024)
    tmp_size_mib: int = Field(default=1024, ge=1, le=1024 * 1024)
    cpu_nice: int = Field(default=10, ge=0, le=19)

    def inner_argv(self) -> list[str]:
        """The commands run inside the sandbox, before the CLI, that set these limits (each execs the
        next: the CLI keeps PID 2)."""
        nproc, fsize, data = self.processes_max, self.file_size_mib * _MIB, self.process_memory_mib * _MIB
        return [
            PRLIMIT, f"--nproc={nproc}:{nproc}", f"--fsize={fsize}:{fsize}", f"--data={data}:{data}", "--",
            NICE, "-n", str(self.cpu_nice), "--",
        ]  # fmt: skip


class SandboxPolicy(BaseModel):
    """What one CLI may have inside its sandbox (part of its profile).

    `env_allow`: variable names passed from the environment the driver builds (e.g. the CLI's model-service
    key); `ro_binds`: (outside, inside) paths mounted read-only, the CLI's installation; `network`: `host`
    shares the host's network (the cloud host's firewall confines the CLI's user), `none` gives the sandbox
    an empty network namespace; `home_seed`: a directory whose copy is the CLI's pristine home (its login
    and configuration only); `path`: the PATH inside; `setenv`: fixed variables inside (e.g. the
    PYTHONPATH of a runtime mounted by `ro_binds`); `limits`: the sandbox's resource limits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_allow: tuple[str, ...] = ()
    ro_binds: tuple[tuple[str, str], ...] = ()
    network: Literal["host", "none"] = "host"
    home_seed: Path | None = None
    path: str = Field(default=SYSTEM_PATH, min_length=1)
    setenv: tuple[tuple[str, str], ...] = ()
    limits: SandboxLimits = SandboxLimits()

    @field_validator("env_allow")
    @classmethod
    def _no_agent_credentials(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not name or "=" in name or name.upper().startswith(FORBIDDEN_PREFIXES):
                raise ValueError(f"{name!r} may not be passed into the sandbox")
        return names

    @field_validator("setenv")
    @classmethod
    def _no_agent_settings(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        cls._no_agent_credentials(tuple(name for name, _ in pairs))
        return pairs

    @field_validator("ro_binds")
    @classmethod
    def _absolute_binds(cls, binds: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for outside, inside in binds:
            if not (outside.startswith("/") and inside.startswith("/")) or inside in (WORKSPACE, HOME, "/"):
                raise ValueError(f"read-only mount {outside!r} → {inside!r}: absolute, not over the tree")
        return binds


@dataclass(frozen=True)
class CliUser:
    """The CLI's own unprivileged user (the cloud's `aipm-cli`): the sandbox runs as it, its tree and home
    are handed over to it for the job and taken back before the agent reads them."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> CliUser:
        """The user `name` from the password database. Raises SandboxFault if it does not exist, is root
        or is the agent's own user (the boundary would be none)."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxFault(f"the CLI user {name!r} does not exist") from None
        if entry.pw_uid == 0 or entry.pw_uid == os.getuid() or entry.pw_gid == 0:
            raise SandboxFault(f"the CLI user {name!r} must be neither root nor the agent's own user")
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def launch_prefix(self) -> list[str]:
        """`setpriv` switching to this user with no supplementary group and no inheritable or ambient
        capability, so bwrap starts unprivileged (bwrap refuses to run with capabilities it did not get
        from setuid). Needs CAP_SETUID and CAP_SETGID. Source: setpriv(1)."""
        return [
            SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
            "--inh-caps=-all", "--ambient-caps=-all", "--",
        ]  # fmt: skip

    def hand_over(self, root: Path) -> None:
        """Make `root` and everything under it this user's, links not followed, modes unchanged: GNU
        `chown -R --no-dereference` (C, several times faster than a walk in Python on a large tree). Only on
        trees the agent made or took back (the CLI user cannot write in them meanwhile, so the tool walks a
        tree that holds still). Needs CAP_CHOWN (inherited as an ambient capability). Raises SandboxFault."""
        if not root.exists() and not root.is_symlink():
            return
        try:
            subprocess.run(
                [CHOWN, "-R", "--no-dereference", f"{self.uid}:{self.gid}", "--", str(root)],
                env={"PATH": SYSTEM_PATH, "LANG": "C"},
                capture_output=True,
                text=True,
                timeout=_CHOWN_TIMEOUT_S,
                check=True,
            )
        except subprocess.CalledProcessError as err:
            raise SandboxFault(
                f"cannot hand {root} over to the CLI user {self.name}: {err.stderr[-500:]}"
            ) from err
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SandboxFault(f"cannot hand {root} over to the CLI user {self.name}: {err}") from err

    def share_root(self, directory: Path) -> None:
        """After `hand_over`: `directory` itself is the agent's again, shared with this user's group (mode
        0770), so both may create and remove entries in it (the agent replaces TASK.md between the CLI's
        turns); everything inside stays this user's. Needs CAP_CHOWN. Raises SandboxFault."""
        try:
            os.chown(directory, os.getuid(), self.gid, follow_symlinks=False)
            directory.chmod(0o770)
        except OSError as err:
            raise SandboxFault(f"cannot share {directory} with the CLI user {self.name}: {err}") from err

    def take_back(self, root: Path) -> None:
        """Make `root` and everything under it the agent's again, top down (each directory is owned and
        readable before it is opened, relative to its parent's open descriptor, links never followed), with
        no group or other write and the owner's read (and search on directories): after it the CLI user can
        change nothing there. In Python, not `chown -R`: the CLI may have locked a directory (mode 000), which
        the agent must own and open before it lists it. Needs CAP_CHOWN. Raises SandboxFault, also for a tree
        deeper than WALK_MAX_DEPTH (then partly taken back; `remove_tree` still removes it)."""
        me, group = os.getuid(), os.getgid()
        try:
            if not root.exists() and not root.is_symlink():
                return
            if root.is_symlink() or not root.is_dir():
                os.chown(root, me, group, follow_symlinks=False)
                return
            parent = os.open(root.parent, _DIR_OPEN)
            try:
                _own_dir_at(parent, root.name, me, group)
                top = os.open(root.name, _DIR_OPEN, dir_fd=parent)
            finally:
                os.close(parent)
            try:
                for entry in walk_tree(top, root, max_entries=None):
                    if stat.S_ISDIR(entry.st.st_mode):
                        _own_dir_at(entry.dir_fd, entry.name, me, group)
                        continue
                    os.chown(entry.name, me, group, dir_fd=entry.dir_fd, follow_symlinks=False)
                    mode = stat.S_IMODE(entry.st.st_mode)
                    if stat.S_ISREG(entry.st.st_mode) and (mode & 0o600 != 0o600 or mode & 0o022):
                        # the directory is the agent's now: the CLI user cannot swap the name meanwhile
                        os.chmod(entry.name, (mode | 0o600) & ~0o022, dir_fd=entry.dir_fd)
            finally:
                os.close(top)
        except OSError as err:
            raise SandboxFault(f"cannot take {root} back from the CLI user {self.name}: {err}") from err

    def take_back_top(self, directory: Path) -> None:
        """Take back `directory` and its direct entries only (enough to move them elsewhere: moving a
        directory needs write on it). Needs CAP_CHOWN. Raises SandboxFault."""
        me, group = os.getuid(), os.getgid()
        try:
            _own_dir(directory, me, group)
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        _own_dir(entry.path, me, group)
                    else:
                        os.chown(entry.path, me, group, follow_symlinks=False)
        except OSError as err:
            raise SandboxFault(f"cannot take {directory} back from the CLI user {self.name}: {err}") from err


def _own_dir(path: str | Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    os.chmod(path, (mode | 0o700) & ~0o022)  # noqa: PTH101 - a str path, hot loop


def _own_dir_at(dir_fd: int, name: str, uid: int | None, gid: int) -> None:
    """Make the directory `name` in `dir_fd` (`uid`'s, when given, and) searchable, readable and writable by
    its owner, no group or other write. Through an O_PATH descriptor opened without following a link: a
    same-uid process that swaps the name for a link meanwhile gets ELOOP, never a chmod of the link's
    target (chmod(2) has no no-follow flag on Linux; /proc/self/fd names the opened inode)."""
    fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        via = f"/proc/self/fd/{fd}"
        if uid is not None:
            os.chown(via, uid, gid)
        mode = stat.S_IMODE(os.stat(via).st_mode)  # noqa: PTH116 - a descriptor's path
        if mode & 0o700 != 0o700 or mode & 0o022:
            os.chmod(via, (mode | 0o700) & ~0o022)  # noqa: PTH101 - a descriptor's path
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SandboxProcess:
    """A process of the sandbox: its PID in the agent's namespace and in the sandbox's."""

    pid: int
    ns_pid: int


class Sandbox:
    """One slot's sandbox. `start()` prepares its directories and reaps what an earlier agent left;
    `command()` wraps a CLI's argv; `kill_all_but_main()` between jobs; `stop()` ends everything in it.

    `slot_dir` holds `tree` and `home`; `pristine_home` is the profile's pristine copy (outside every
    mount); `cli_user`: the CLI's own user, or None to run it as the agent's (local mode). Thread use: the
    slot's thread only.
    """

    def __init__(
        self,
        slot_dir: Path,
        pristine_home: Path,
        policy: SandboxPolicy,
        *,
        cli_user: CliUser | None = None,
        bwrap: str = BWRAP,
    ) -> None:
        self.slot_dir = slot_dir
        self.tree = slot_dir / "tree"
        self.home = slot_dir / "home"
        self.pristine_home = pristine_home
        self.policy = policy
        self.cli_user = cli_user
        self._bwrap = bwrap
        key = hashlib.sha256(str(slot_dir.resolve()).encode()).hexdigest()[:12]
        self._marker_prefix = f"aipm-{key}-"
        self.marker = self._marker_prefix + uuid.uuid4().hex[:8]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the tree and a fresh home; kill any sandbox an earlier agent process left on this slot.
        Raises SandboxFault if bwrap is missing or the home cannot be seeded."""
        if not Path(self._bwrap).is_file():
            raise SandboxFault(f"bubblewrap is not installed at {self._bwrap}")
        self.reap(everything=True)
        leftovers = [*self.slot_dir.glob(f"{TRASH_PREFIX}*"), *self.slot_dir.glob(f"{STAGING_PREFIX}*")]
        try:
            for leftover in leftovers:
                remove_tree(leftover, owner=self.cli_user)
        except OSError as err:
            raise SandboxFault(f"cannot clear what an earlier agent left in {self.slot_dir}: {err}") from err
        self.tree.mkdir(parents=True, exist_ok=True)
        if self.cli_user is not None:
            self._let_cli_user_reach_the_slot()
        self.seed_pristine()
        self.reset_home()

    def _let_cli_user_reach_the_slot(self) -> None:
        """The CLI user's bwrap mounts the tree and the home by path: it needs search (x, never read) on
        the slot's directory and its parent, and finds it on every directory above. Raises SandboxFault
        naming a directory it cannot pass."""
        try:
            for directory in (self.slot_dir.parent, self.slot_dir):
                directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o001)
            for directory in self.slot_dir.resolve().parents:
                if not directory.stat().st_mode & 0o001:
                    raise SandboxFault(
                        f"the CLI user cannot reach its slot: {directory} lacks search (o+x) permission"
                    )
        except OSError as err:
            raise SandboxFault(f"cannot open the slot {self.slot_dir} to the CLI user: {err}") from err

    def stop(self) -> None:
        """Kill every process of every sandbox of this slot (the namespace dies with its init)."""
        self.reap(everything=False)

    def seed_pristine(self) -> None:
        """Make the pristine home from the policy's seed (once; an existing pristine copy is kept)."""
        if self.pristine_home.is_dir():
            return
        staging = self.pristine_home.with_name(self.pristine_home.name + f".{uuid.uuid4().hex[:6]}")
        try:
            if self.policy.home_seed is not None:
                shutil.copytree(self.policy.home_seed, staging, symlinks=True)
            else:
                staging.mkdir(parents=True)
            staging.chmod(0o700)
            staging.rename(self.pristine_home)
        except FileExistsError:
            shutil.rmtree(staging, ignore_errors=True)  # another slot seeded it first
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise SandboxFault(f"cannot seed the CLI's home from {self.policy.home_seed}: {err}") from err

    def reset_home(self) -> None:
        """Replace the slot's home with a copy of the pristine one (the CLI user's, if any). Raises
        SandboxFault."""
        try:
            if self.home.exists() or self.home.is_symlink():
                remove_tree(self.home, owner=self.cli_user)
            shutil.copytree(self.pristine_home, self.home, symlinks=True)
        except OSError as err:
            raise SandboxFault(f"cannot reset the CLI's home {self.home}: {err}") from err
        if self.cli_user is not None:
            self.cli_user.hand_over(self.home)

    def restore_home(self, paths: Sequence[str]) -> None:
        """Put each of `paths` (relative to the home: what the CLI rewrites by itself, its profile's
        `home_restore`) back as it is in the pristine copy — removed when the pristine copy has none — while
        the CLI keeps running. Raises SandboxFault for a path that leaves the home or runs through a link
        (the CLI may have planted one), or when the files cannot be replaced."""
        if not paths:
            return
        with self._home_taken_back():
            self._restore(paths)

    def _restore(self, paths: Sequence[str]) -> None:
        for rel in paths:
            parts = PurePosixPath(rel).parts
            if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
                raise SandboxFault(f"home_restore path {rel!r} must be relative, inside the home")
            target = self.home.joinpath(*parts)
            for parent in [self.home, *list(target.parents)[: len(parts) - 1]]:
                if parent.is_symlink():
                    raise SandboxFault(f"the CLI's home has a link at {parent}; it is not restored in place")
            self._restore_one(rel, target, self.pristine_home.joinpath(*parts))

    def _restore_one(self, rel: str, target: Path, source: Path) -> None:
        """Move `target` aside (not removed in place: the CLI keeps running and may be writing there — Codex
        unpacks its skills in the background after start — and a removal in place races it: ENOTEMPTY) and
        copy `source` in its place; again while the CLI keeps recreating or changing it, at most
        RESTORE_ATTEMPTS times. Raises SandboxFault."""
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            try:
                if target.exists() or target.is_symlink():
                    discard([target], self.slot_dir, owner=self.cli_user)
                if source.is_dir() and not source.is_symlink():
                    shutil.copytree(source, target, symlinks=True)
                elif source.exists() or source.is_symlink():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target, follow_symlinks=False)
                if _same_tree(target, source):
                    return
            except FileExistsError:
                pass  # the CLI made it again between the move and the copy
            except OSError as err:
                raise SandboxFault(f"cannot restore {rel!r} in the CLI's home: {err}") from err
            if attempt < RESTORE_ATTEMPTS:
                time.sleep(RESTORE_PAUSE_S)
        raise SandboxFault(f"cannot restore {rel!r} in the CLI's home: the CLI keeps changing it")

    def save_home_paths(
        self, paths: Sequence[str], limit_bytes: int, given: Sequence[str] = ()
    ) -> bytes | None:
        """The CLI's saved sessions (`paths` relative to the home, its profile's `session_state`) as a gzip
        tar: regular files and directories only (links and special files are left out), every file's bytes
        through the secret screen, which also redacts the `given` values (the credentials the CLI was
        given), or None when none of the paths exists. Raises SandboxFault if the archive would exceed
        `limit_bytes`, a file is too large to screen, or the home cannot be read."""
        with self._home_taken_back():
            return pack_home_paths(self.home, paths, limit_bytes, given)

    def load_home_paths(
        self, archive: bytes, paths: Sequence[str], rename: tuple[str, str] | None = None
    ) -> None:
        """Put saved sessions (an archive of :meth:`save_home_paths`, possibly made by another host) back
        into the home. The archive came from a CLI and is treated as hostile: every member must be a
        regular file or directory under one of `paths` (after `rename`, a (pattern, replacement) for its
        name: the profile's `session_state_rename`), at most ARCHIVE_MAX_BYTES unpacked in all; it is
        unpacked with tarfile's `data` filter (no absolute names, no `..`, no links, no devices; PEP 706)
        into a staging directory in the slot's directory (not mounted in the sandbox), then merged into the
        home by renames through directory descriptors, no link followed (:func:`unpack_home_paths`).
        Raises SandboxFault naming what is refused; the home is left as it was then (a process changing
        the home during the final renames can leave part of the archive's files in it, whole, inside it)."""
        with self._home_taken_back():
            unpack_home_paths(archive, self.home, paths, rename)

    @contextlib.contextmanager
    def _home_taken_back(self) -> Iterator[None]:
        """The home is the agent's (the CLI user can change nothing in it) while the block runs, the CLI
        user's again after it. Nothing to do without a CLI user. Raises SandboxFault."""
        if self.cli_user is None:
            yield
            return
        self.cli_user.take_back(self.home)
        try:
            yield
        finally:
            self.cli_user.hand_over(self.home)

    def home_changed(self) -> bool:
        """True if the slot's home differs in any way from the pristine copy (names, types, contents, link
        targets; modes too without a CLI user, whose home the agent takes back to read it), and True too
        when it cannot be compared (deeper than WALK_MAX_DEPTH, over WALK_MAX_ENTRIES, unreadable: logged):
        the answer is then a fresh home. Never raises."""
        try:
            if self.cli_user is None:
                return snapshot(self.home) != snapshot(self.pristine_home)
            with self._home_taken_back():  # owned and readable by the agent, modes normalised
                return _without_modes(snapshot(self.home)) != _without_modes(snapshot(self.pristine_home))
        except (SandboxFault, OSError) as err:
            log.warning("the CLI's home cannot be compared with its pristine copy", extra={"error": str(err)})
            return True

    # -- the command --------------------------------------------------------------------------------

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], *, new_session: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        """The bwrap command line that runs `argv` in /workspace, and the environment to start it with.

        `env` is what the driver wants the CLI to see; only names of BASE_ENV and the policy's allow-list
        pass, the agent's credentials never. `new_session=False` only for a driver that gives the CLI a
        pseudo-terminal of its own (TIOCSTI there reaches the CLI's own input, not the agent's terminal;
        Ctrl-C must reach the CLI). Raises ValueError for an empty argv, SandboxFault without
        /usr/bin/python3 for `new_session=False`.
        """
        if not argv or not argv[0]:
            raise ValueError("argv must name a command")
        if not new_session and not Path(_FOREGROUND[0]).is_file():
            raise SandboxFault(f"{_FOREGROUND[0]} is missing: the terminal launcher needs it")
        allowed = set(BASE_ENV) | set(self.policy.env_allow)
        inner = {
            k: v
            for k, v in env.items()
            if k in allowed and not k.upper().startswith(FORBIDDEN_PREFIXES) and "\0" not in v
        }
        inner.update(self.policy.setenv)
        inner.update(HOME=HOME, PATH=self.policy.path, TMPDIR=SANDBOX_TMP, PWD=WORKSPACE, USER="cli")
        inner.setdefault("LANG", "C.UTF-8")
        args = [
            self._bwrap,
            "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", self.marker,
            "--die-with-parent",
            *(["--new-session"] if new_session else []),
            *(["--unshare-net"] if self.policy.network == "none" else []),
        ]  # fmt: skip
        args += _system_mounts()
        # /tmp first: bwrap mounts in order, so a CLI installed under /tmp (a checkout in /tmp, its venv)
        # is bound over the tmpfs instead of being hidden by it.
        args += ["--size", str(self.policy.limits.tmp_size_mib * _MIB), "--tmpfs", SANDBOX_TMP]
        for outside, inside in self.policy.ro_binds:
            args += ["--ro-bind", outside, inside]
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--bind", str(self.tree), WORKSPACE,
            "--bind", str(self.home), HOME,
            "--chdir", WORKSPACE,
            "--clearenv",
        ]  # fmt: skip
        for key, value in sorted(inner.items()):
            args += ["--setenv", key, value]
        args += ["--", *self.policy.limits.inner_argv(), *([] if new_session else _FOREGROUND), *argv]
        if self.cli_user is not None:
            args = [*self.cli_user.launch_prefix(), *args]
        outer = {"PATH": SYSTEM_PATH, "LANG": inner["LANG"]}
        return args, outer

    # -- processes ----------------------------------------------------------------------------------

    def processes(self) -> list[SandboxProcess]:
        """Every process inside this slot's current sandboxes (not the outer bwrap)."""
        found: list[SandboxProcess] = []
        for outer in self._outers(everything=False):
            found.extend(_namespace_members(outer))
        return found

    def kill_all_but_main(self) -> list[int]:
        """Between jobs: kill every process in the sandbox except its init (1) and the CLI's main process
        (2), again while new ones appear (a fork bomb forks between listing and killing). Returns the PIDs
        killed. Raises SandboxFault if one survives SIGKILL or they keep coming."""
        killed: list[int] = []
        for _ in range(_KILL_ROUNDS):
            victims = [p.pid for p in self.processes() if p.ns_pid > 2]
            if not victims:
                return killed
            killed += self._kill(victims)
        raise SandboxFault(f"processes kept appearing in the sandbox after {_KILL_ROUNDS} rounds of SIGKILL")

    def reap(self, *, everything: bool) -> list[int]:
        """Kill whole sandboxes of this slot: this instance's (`everything=False`) or any, including those
        an earlier agent process left (`everything=True`). Returns the outer bwrap PIDs killed."""
        outers = list(self._outers(everything=everything))
        members = [m.pid for outer in outers for m in _namespace_members(outer)]
        if outers:
            log.warning("killing leftover sandbox processes", extra={"count": len(members) + len(outers)})
        self._kill(members + outers)
        return outers

    def _kill(self, pids: list[int]) -> list[int]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT_S
        alive = [pid for pid in pids if _alive(pid)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.01)
            alive = [pid for pid in alive if _alive(pid)]
        if alive:
            raise SandboxFault(f"sandbox processes survived SIGKILL: {alive}")
        return pids

    def _outers(self, *, everything: bool) -> Iterator[int]:
        """The outer bwrap processes (in the agent's PID namespace, by depth: a process in a sandbox's own
        namespace has one NSpid more) carrying this slot's marker."""
        prefix = self._marker_prefix if everything else self.marker
        own_depth = _ns_depth("self")
        for pid in _pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not cmdline or Path(cmdline[0].decode(errors="replace")).name != "bwrap":
                continue
            if "--hostname" not in (args := [a.decode(errors="replace") for a in cmdline]):
                continue
            name = args[args.index("--hostname") + 1] if args.index("--hostname") + 1 < len(args) else ""
            matches = name == prefix if not everything else name.startswith(prefix)
            if matches and _ns_depth(pid) == own_depth:
                yield pid


@dataclass(frozen=True)
class TreeEntry:
    """One entry met by :func:`walk_tree`: its path relative to the walked root (`/`-separated), its name,
    the open descriptor of the directory holding it (valid until the walk moves on: open, read or change
    the entry relative to it, never by path) and its lstat."""

    rel: str
    name: str
    dir_fd: int
    st: os.stat_result


def walk_tree(
    root_fd: int,
    where: Path,
    *,
    max_depth: int = WALK_MAX_DEPTH,
    max_entries: int | None = WALK_MAX_ENTRIES,
    prune: Callable[[TreeEntry], bool] | None = None,
) -> Iterator[TreeEntry]:
    """Everything under the directory open as `root_fd` (not closed here), top down, names sorted in each
    directory, without recursion. Each directory is opened relative to its parent's descriptor with
    O_DIRECTORY|O_NOFOLLOW, so no path is resolved again and no link is followed, whatever a process
    changes meanwhile (a name swapped for a link: ELOOP; for another directory: the walk notices). The
    consumer runs between entries, before a directory is entered (so it may make it readable first).
    `where` names the root in errors; an entry for which `prune` is True is neither yielded nor entered.
    Raises WalkLimit for a directory more than `max_depth` levels below the root or more than
    `max_entries` entries (None: no limit), SandboxFault for a directory replaced while walked, OSError
    when the tree cannot be read."""
    count = 0
    stack: list[tuple[int, str, list[str]]] = []
    try:
        stack.append((os.dup(root_fd), "", sorted(_names(root_fd), reverse=True)))
        while stack:
            fd, rel, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop()
            child = f"{rel}/{name}" if rel else name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            entry = TreeEntry(child, name, fd, st)
            if prune is not None and prune(entry):
                continue
            count += 1
            if max_entries is not None and count > max_entries:
                raise WalkLimit(f"{where} holds more than {max_entries} entries; not read")
            yield entry
            if not stat.S_ISDIR(st.st_mode):
                continue
            if len(stack) >= max_depth:
                raise WalkLimit(f"{_shown(where, child)} is more than {max_depth} directories deep; not read")
            sub = os.open(name, _DIR_OPEN, dir_fd=fd)
            opened = os.fstat(sub)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                os.close(sub)
                raise SandboxFault(f"{_shown(where, child)} was replaced while it was read")
            stack.append((sub, child, []))
            stack[-1][2].extend(sorted(_names(sub), reverse=True))
    finally:
        for fd, *_ in stack:
            os.close(fd)


def _names(dir_fd: int) -> list[str]:
    """The names in the directory open as `dir_fd` (listdir(3) of a descriptor: no path resolved)."""
    return os.listdir(dir_fd)


def _shown(where: Path, rel: str) -> str:
    """`where/rel` for a message, its middle cut when long (a 2,000-level path would fill the log)."""
    text = f"{where}/{rel}"
    return text if len(text) <= 300 else f"{text[:200]}…{text[-80:]}"


def _open_dirs(base_fd: int, parts: Sequence[str], where: Path, *, create: bool = False) -> int | None:
    """A new descriptor of the directory `parts` below `base_fd`, each part opened relative to the last with
    O_DIRECTORY|O_NOFOLLOW (made, mode 0700, when `create`); None when one is missing. Raises SandboxFault
    for a part that is a link or not a directory, OSError otherwise."""
    fd = os.dup(base_fd)
    try:
        for depth, part in enumerate(parts, start=1):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            try:
                sub = os.open(part, _DIR_OPEN, dir_fd=fd)
            except FileNotFoundError:
                os.close(fd)
                return None
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    shown = where.joinpath(*parts[:depth])
                    raise SandboxFault(
                        f"the CLI's home has a link or a file at {shown}; not followed"
                    ) from err
                raise
            os.close(fd)
            fd = sub
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Relative path → (kind, mode, digest) of everything under `root` (:func:`walk_tree`: symlinks not
    followed, files read through descriptors). Missing root → {"": ("missing", 0, "")}. Raises SandboxFault
    for a tree over WALK_MAX_DEPTH or WALK_MAX_ENTRIES, OSError when it cannot be read."""
    result: dict[str, tuple[str, int, str]] = {}
    if not root.is_dir() or root.is_symlink():
        return {"": ("missing" if not root.exists() else "not-a-directory", 0, "")}
    top = os.open(root, _DIR_OPEN)
    try:
        for entry in walk_tree(top, root):
            mode = stat.S_IMODE(entry.st.st_mode)
            if stat.S_ISLNK(entry.st.st_mode):
                result[entry.rel] = ("link", 0, os.readlink(entry.name, dir_fd=entry.dir_fd))
            elif stat.S_ISDIR(entry.st.st_mode):
                result[entry.rel] = ("dir", mode, "")
            elif stat.S_ISREG(entry.st.st_mode):
                digest = hashlib.sha256()
                with _open_regular(entry) as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                result[entry.rel] = ("file", mode, digest.hexdigest())
            else:
                result[entry.rel] = ("special", mode, str(stat.S_IFMT(entry.st.st_mode)))
    finally:
        os.close(top)
    return result


def _open_regular(entry: TreeEntry) -> io.BufferedReader:
    """The regular file `entry` opened relative to its directory, never through a link (O_NOFOLLOW) and
    never blocking on a FIFO swapped in meanwhile. Raises SandboxFault if it is no longer that file."""
    fd = os.open(entry.name, _FILE_OPEN, dir_fd=entry.dir_fd)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
        entry.st.st_dev,
        entry.st.st_ino,
    ):
        os.close(fd)
        raise SandboxFault(f"{entry.rel} was replaced while it was read")
    return os.fdopen(fd, "rb")


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), f"/{top}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{top}"]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def remove_tree(path: Path, *, owner: CliUser | None = None) -> None:
    """Remove a file, link or directory tree of any depth, without following links and without recursion:
    each directory is made the agent's (with `owner`, the CLI user may own it) and writable before it is
    opened, relative to its parent's descriptor; at most _REMOVE_HELD_DIRS directories are held open, a
    deeper one is first moved up into the tree's top (same file system) and removed from there. A missing
    path is fine. Raises OSError (an entry that cannot be removed; ENOTEMPTY when a writer keeps adding)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
        return
    if not path.exists():
        return
    uid = os.getuid() if owner is not None else None
    parent = os.open(path.parent, _DIR_OPEN)
    try:
        _own_dir_at(parent, path.name, uid, os.getgid())
        _remove_dir_at(parent, path.name, uid)
    except FileNotFoundError:
        pass  # removed meanwhile (the trash thread and a restarted slot's start may meet)
    finally:
        os.close(parent)


def _remove_dir_at(parent: int, name: str, uid: int | None) -> None:
    gid = os.getgid()
    top = os.open(name, _DIR_OPEN, dir_fd=parent)
    stack: list[tuple[int, str, list[str]]] = [(top, name, sorted(_names(top)))]
    relists = 3  # a directory is listed again when it is not empty at the end: moved-up ones, a writer
    try:
        while stack:
            fd, own_name, names = stack[-1]
            if not names:
                holder = stack[-2][0] if len(stack) > 1 else parent
                try:
                    os.rmdir(own_name, dir_fd=holder)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    if err.errno != errno.ENOTEMPTY or relists <= 0:
                        raise
                    again = _names(fd)
                    if not all(n.startswith(_MOVED_UP) for n in again):
                        relists -= 1  # a writer's; what a remover of the same tree moved up is progress
                    names.extend(again)
                    continue
                os.close(fd)
                stack.pop()
                continue
            entry = names.pop()
            try:
                st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(entry, dir_fd=fd)
                    continue
                _own_dir_at(fd, entry, uid, gid)
                if len(stack) >= _REMOVE_HELD_DIRS:
                    os.rename(entry, f"{_MOVED_UP}{uuid.uuid4().hex}", src_dir_fd=fd, dst_dir_fd=top)
                    relists += 1
                    continue
                sub = os.open(entry, _DIR_OPEN, dir_fd=fd)
            except FileNotFoundError:
                continue  # someone else removed it meanwhile
            stack.append((sub, entry, sorted(_names(sub))))
    finally:
        for fd, *_ in stack:
            os.close(fd)


def discard(paths: Sequence[Path], trash_parent: Path, *, owner: CliUser | None = None) -> None:
    """Move `paths` out of the way at once and delete them in the background: each is renamed into a new
    trash directory in `trash_parent` (same file system, outside every mount of the sandbox), which a
    daemon thread removes (`remove_tree`, links not followed; with `owner`, taken back first). A process
    still writing into a moved directory writes into the trash; the thread retries while the tree keeps
    changing, and `Sandbox.start` clears what is left. Raises OSError (the rename)."""
    trash = trash_parent / f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}"
    trash.mkdir(mode=0o700)
    for path in paths:
        path.rename(trash / path.name)
    threading.Thread(target=_remove_quietly, args=(trash, owner), name="trash", daemon=True).start()


def _remove_quietly(trash: Path, owner: CliUser | None, *, attempts: int = 5, pause_s: float = 0.5) -> None:
    """The trash thread: retried while a writer adds entries (ENOTEMPTY); a last failure is logged."""
    for attempt in range(1, attempts + 1):
        try:
            remove_tree(trash, owner=owner)
            return
        except (OSError, SlotFault) as err:
            if attempt == attempts:
                extra = {"path": str(trash), "error": str(err)}
                log.warning("could not delete a discarded tree", extra=extra)
            else:
                time.sleep(pause_s)


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _ns_depth(pid: int | str) -> int | None:
    """How many PID namespaces `pid` is in (its NSpid fields, proc(5)); readable for any user's process,
    unlike /proc/<pid>/ns (which needs ptrace access)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return None


def pack_home_paths(
    home: Path, paths: Sequence[str], limit_bytes: int, given: Sequence[str] = ()
) -> bytes | None:
    """See :meth:`Sandbox.save_home_paths` (here for a home at any path). The home and every directory in
    it are opened relative to their parent's descriptor with O_NOFOLLOW (:func:`walk_tree`), and files
    read through the descriptor checked to be what was listed, so a link anywhere, even one swapped in
    while the save runs, is never followed: a link on a path's way refuses the save, one inside is left
    out. Files are measured before they are read (at most ARCHIVE_MAX_BYTES and ARCHIVE_MAX_ENTRIES in
    all, WALK_MAX_DEPTH deep, so every saved archive unpacks); every file's bytes go through the secret
    screen (a chat log may quote a key the CLI saw), which also redacts the `given` values
    (:class:`~ec2_agent.secret_screen.Screen`); a file over its SCREEN_MAX_CHARS refuses the save."""
    screen = Screen(given)
    buffer = io.BytesIO()
    found = False
    budget, entries_left = ARCHIVE_MAX_BYTES, ARCHIVE_MAX_ENTRIES
    try:
        home_fd = os.open(home, _DIR_OPEN)
    except OSError as err:
        raise SandboxFault(f"the CLI's home {home} cannot be opened (a link?): {err}") from err
    try:
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
            for rel in paths:
                parts = PurePosixPath(rel).parts
                parent = _open_dirs(home_fd, parts[:-1], home)
                if parent is None:
                    continue
                try:
                    try:
                        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        raise SandboxFault(f"the CLI's home has a link at {home / rel}; not followed")
                    found = True
                    top = TreeEntry(rel, parts[-1], parent, st)
                    walked = [top] if not stat.S_ISDIR(st.st_mode) else _with_tree(top, home / rel)
                    for entry in walked:
                        entries_left -= 1
                        if entries_left < 0:
                            raise SandboxFault(f"saved sessions hold over {ARCHIVE_MAX_ENTRIES} entries")
                        name = entry.rel if entry is top else f"{rel}/{entry.rel}"
                        budget -= _add_entry(archive, entry, name, budget, screen)
                        if buffer.tell() > limit_bytes:
                            raise SandboxFault(
                                f"the CLI's saved sessions exceed {limit_bytes} bytes; not kept"
                            )
                finally:
                    os.close(parent)
    except OSError as err:
        raise SandboxFault(f"the CLI's saved sessions cannot be read: {err}") from err
    finally:
        os.close(home_fd)
    data = buffer.getvalue()
    if len(data) > limit_bytes:
        raise SandboxFault(f"the CLI's saved sessions exceed {limit_bytes} bytes; not kept")
    return data if found else None


def _with_tree(top: TreeEntry, where: Path) -> Iterator[TreeEntry]:
    """`top` (a directory) and everything under it (:func:`walk_tree`, within ARCHIVE_MAX_ENTRIES)."""
    yield top
    fd = os.open(top.name, _DIR_OPEN, dir_fd=top.dir_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (top.st.st_dev, top.st.st_ino):
            raise SandboxFault(f"{where} was replaced while it was read")
        yield from walk_tree(fd, where, max_entries=ARCHIVE_MAX_ENTRIES + 1)
    finally:
        os.close(fd)


def _add_entry(archive: tarfile.TarFile, entry: TreeEntry, name: str, budget: int, screen: Screen) -> int:
    """Add a directory or a regular file (links and others are left out), its bytes screened (any
    encoding: see :meth:`Screen.data`); returns the bytes added. SandboxFault when the file is larger than
    what is left of `budget` or than the screen examines."""
    st = entry.st
    if stat.S_ISDIR(st.st_mode):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, stat.S_IMODE(st.st_mode), int(st.st_mtime)
        archive.addfile(info)
        return 0
    if not stat.S_ISREG(st.st_mode):
        return 0
    if st.st_size > budget:
        raise SandboxFault(f"the CLI's saved sessions unpack to more than {ARCHIVE_MAX_BYTES} bytes")
    with _open_regular(entry) as f:
        raw = f.read(budget + 1)
    if len(raw) > budget:
        raise SandboxFault(f"the CLI's saved sessions unpack to more than {ARCHIVE_MAX_BYTES} bytes")
    try:
        data = screen.data(raw)
    except ScreenTooLarge as err:
        raise SandboxFault(f"the CLI's saved session {name!r} is too large to screen: {err}") from err
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), stat.S_IMODE(st.st_mode), int(st.st_mtime)
    archive.addfile(info, io.BytesIO(data))
    return len(data)


def unpack_home_paths(
    data: bytes, home: Path, paths: Sequence[str], rename: tuple[str, str] | None = None
) -> None:
    """See :meth:`Sandbox.load_home_paths` (here for a home at any path): the archive is extracted into a
    new staging directory beside the home (`home.parent`, which the sandbox does not mount), then moved
    into the home (:func:`_move_into_home`)."""
    allowed = [PurePosixPath(p) for p in paths]
    staging = home.parent / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
            if len(members) > ARCHIVE_MAX_ENTRIES:
                raise SandboxFault(f"saved sessions hold over {ARCHIVE_MAX_ENTRIES} entries")
            total = 0
            for member in members:
                if rename is not None:
                    member.name = re.sub(rename[0], rename[1], member.name)
                name = PurePosixPath(member.name)
                if not (member.isfile() or member.isdir()):
                    raise SandboxFault(f"saved sessions: {member.name!r} is not a file or a directory")
                inside = any(name.is_relative_to(a) for a in allowed)
                if name.is_absolute() or ".." in name.parts or not inside:
                    raise SandboxFault(f"saved sessions: {member.name!r} is outside {list(paths)}")
                if len(name.parts) > WALK_MAX_DEPTH:
                    raise SandboxFault(f"saved sessions: {member.name[:200]!r}… is too deep")
                total += member.size
                if total > ARCHIVE_MAX_BYTES:
                    raise SandboxFault(f"saved sessions unpack to more than {ARCHIVE_MAX_BYTES} bytes")
            staging.mkdir(mode=0o700)
            archive.extractall(staging, members=_largest_of_each_name(members), filter="data")
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        _move_into_home(staging, home, paths, apply=False)
        _move_into_home(staging, home, paths, apply=True)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SandboxFault(f"saved sessions cannot be unpacked: {err}") from err
    finally:
        try:
            remove_tree(staging)
        except OSError as err:
            log.warning(
                "could not remove a staging directory", extra={"path": str(staging), "error": str(err)}
            )


def _move_into_home(staging: Path, home: Path, paths: Sequence[str], *, apply: bool) -> None:
    """Merge each of `paths` from `staging` into `home` by renames: a name the home lacks is moved in whole,
    a file replaces the home's file (rename(2): never half-written), a directory both have is merged; both
    sides opened relative to descriptors with O_NOFOLLOW at every level, so a link in the home (even one
    swapped in meanwhile) is never written through. `apply=False` only checks (a link, or a file where the
    archive has a directory, or the reverse: SandboxFault naming it) so a home that holds still is either
    changed whole or not at all. Raises SandboxFault, OSError."""
    staging_fd = os.open(staging, _DIR_OPEN)
    home_fd = os.open(home, _DIR_OPEN)
    try:
        pending = [PurePosixPath(rel).parts for rel in paths]
        while pending:
            parts = pending.pop()
            src = _open_dirs(staging_fd, parts[:-1], staging)
            if src is None:
                continue
            try:
                if not _lexists(src, parts[-1]):
                    continue
                dst = _open_dirs(home_fd, parts[:-1], home, create=apply)
                if dst is None:
                    continue  # not applying, and the home lacks the parent: it will be made
                try:
                    pending += _merge_one(src, dst, parts, home, apply=apply)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
    finally:
        os.close(staging_fd)
        os.close(home_fd)


def _merge_one(
    src: int, dst: int, parts: tuple[str, ...], home: Path, *, apply: bool
) -> list[tuple[str, ...]]:
    """Move `parts[-1]` from the directory `src` into `dst` (see :func:`_move_into_home`); returns the
    children still to merge when both hold it as a directory."""
    name = parts[-1]
    staged = os.stat(name, dir_fd=src, follow_symlinks=False)
    try:
        there = os.stat(name, dir_fd=dst, follow_symlinks=False)
    except FileNotFoundError:
        if apply:
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
        return []
    if stat.S_ISDIR(staged.st_mode) and stat.S_ISDIR(there.st_mode):
        fd = os.open(name, _DIR_OPEN, dir_fd=src)
        try:
            return [(*parts, child) for child in _names(fd)]
        finally:
            os.close(fd)
    if stat.S_ISREG(staged.st_mode) and stat.S_ISREG(there.st_mode):
        if apply:
            os.replace(name, name, src_dir_fd=src, dst_dir_fd=dst)
        return []
    raise SandboxFault(
        f"saved sessions: {home.joinpath(*parts)} is not what the archive holds there; not loaded"
    )


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _largest_of_each_name(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """One member per name (a rename may map two files to one: Gemini CLI's metadata-only file of a loaded
    session and the session's own), the largest, in archive order."""
    best: dict[str, tarfile.TarInfo] = {}
    for member in members:
        kept = best.get(member.name)
        if kept is None or member.size > kept.size:
            best[member.name] = member
    return [m for m in members if best[m.name] is m]


def _same_tree(path: Path, pristine: Path) -> bool:
    """True if `path` holds what `pristine` holds (names, kinds, contents, link targets; a missing path
    matches a missing pristine one); False too if `path` changes while it is read."""
    try:
        if not pristine.exists() and not pristine.is_symlink():
            return not path.exists() and not path.is_symlink()
        if not pristine.is_dir() or pristine.is_symlink():
            return filecmp.cmp(path, pristine, shallow=False) if path.is_file() else False
        return _without_modes(snapshot(path)) == _without_modes(snapshot(pristine))
    except OSError:
        return False


def _without_modes(snap: dict[str, tuple[str, int, str]]) -> dict[str, tuple[str, str]]:
    return {path: (kind, digest) for path, (kind, _mode, digest) in snap.items()}


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            text = Path(task.path, "children").read_text()
            found += [int(c) for c in text.split()]
    except OSError:
        pass
    return found


def _namespace_members(outer: int) -> list[SandboxProcess]:
    """Live processes (zombies aside) in the PID namespace whose init is the outer bwrap's child: the
    init's descendants (an orphan in a PID namespace is re-parented to its init, or to a subreaper that is
    itself a descendant; pid_namespaces(7)), found through /proc/<pid>/task/<tid>/children, which any user
    may read (the namespace links need ptrace access to the CLI user's processes)."""
    depth = _ns_depth(outer)
    members = []
    seen: set[int] = set()
    stack = [c for c in _children(outer) if depth is not None and (_ns_depth(c) or 0) > depth]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(_children(pid))
        if not _alive(pid):
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                members.append(SandboxProcess(pid=pid, ns_pid=int(line.split()[-1])))
                break
    return members
