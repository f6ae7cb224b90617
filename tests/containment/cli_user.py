"""The cloud host's CLI user for tests run as root: created as the host's bootstrap does, and a scratch
directory its bubblewrap can reach by path (search on every directory above it).

Not under pytest's own temporary root: pytest makes `/tmp/pytest-of-<user>` private (0700) whenever any
session starts, which would cut the CLI user off in the middle of a test on a shared machine.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLI_USER = "aipm-cli"


def ensure_user(name: str = CLI_USER) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no login shell) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
        return pwd.getpwnam(name)


@contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under the system's temporary directory (mode 0711: other users may pass, never
    list), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
