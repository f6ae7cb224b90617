"""Helpers shared by the forge and GitHub client tests: a running forge, unique repositories, real git."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

from aipm.local.forge import Forge

# Shaped like a real GitHub token, so a leak into a message or a log line would be recognisable.
TOKEN = "ghp_ForgeTestToken0123456789abcdefABCDEF"
OWNER = "acme"

_names = itertools.count(1)
_HTTP = urllib3.PoolManager()


@pytest.fixture(scope="session", name="forge")
def forge_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    """One running forge per test directory (import this fixture into its conftest)."""
    with Forge(tmp_path_factory.mktemp("forge"), TOKEN) as forge:
        yield forge


@pytest.fixture(autouse=True, name="clear_forge_faults")
def clear_forge_faults_fixture(forge: Forge) -> Iterator[None]:
    """No injected fault or latency outlives the test that set it."""
    yield
    forge.clear_faults()


@dataclass(frozen=True)
class Repo:
    name: str
    path: Path  # the bare repository on disk


def new_repository(
    forge: Forge, *, default_branch: str = "main", files: dict[str, str] | None = None
) -> Repo:
    """Create a repository with a unique name under OWNER."""
    name = f"repo-{next(_names)}"
    return Repo(name, forge.create_repository(OWNER, name, default_branch=default_branch, files=files))


def git_in_repo(bare: Path, *args: str) -> str:
    """Run git against a bare repository of the forge (reads only)."""
    result = subprocess.run(
        ["git", f"--git-dir={bare}", *args],
        capture_output=True,
        text=True,
        check=True,
        env=_isolated_env(bare),
    )
    return result.stdout.strip()


def write_credential_helper(directory: Path) -> Path:
    """An executable git credential helper that answers `get` with the token in $FORGE_TEST_TOKEN."""
    helper = directory / "forge-credential-helper"
    helper.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "sys.stdin.read()\n"
        "if sys.argv[1:] == ['get']:\n"
        "    token = os.environ['FORGE_TEST_TOKEN']\n"
        "    sys.stdout.write('username=x-access-token\\npassword=' + token + '\\n')\n",
        encoding="utf-8",
    )
    helper.chmod(0o700)
    return helper


class GitClient:
    """Real git in a scratch HOME, talking to the forge over HTTP; credentials only via the helper."""

    def __init__(self, home: Path, *, token: str | None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = _isolated_env(home)
        self.env["GIT_TERMINAL_PROMPT"] = "0"
        self.helper_args: list[str] = ["-c", "credential.helper="]
        if token is not None:
            self.env["FORGE_TEST_TOKEN"] = token
            self.helper_args += ["-c", f"credential.helper={write_credential_helper(home)}"]

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *self.helper_args, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )


def _isolated_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.invalid",
    }


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the raw bytes of a non-JSON answer
    headers: Mapping[str, str]


def call(
    forge: Forge,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    scheme: str = "Bearer",
    raw: bytes | None = None,
) -> Answer:
    """One HTTP request to the forge; `path` is below base_url (e.g. /api/v3/repos/...)."""
    headers = {"Accept": "application/vnd.github+json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    response = _HTTP.request(method, forge.base_url + path, body=data, headers=headers, retries=False)
    is_json = response.headers.get("Content-Type", "").startswith("application/json") and response.data
    return Answer(response.status, json.loads(response.data) if is_json else response.data, response.headers)
