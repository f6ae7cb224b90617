"""The shipped credential helper, run as git runs it: answers only `get`, only for the configured host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ec2_agent.workspace import install_credential_helper

REQUEST = "protocol=https\nhost=git.example.test\npath=acme/tools.git\n\n"
ENV = {"AIPM_GIT_TOKEN": "s3cret", "AIPM_GIT_HOST": "git.example.test", "AIPM_GIT_PROTOCOL": "https"}


@pytest.fixture
def helper(tmp_path: Path) -> Path:
    return install_credential_helper(tmp_path / "bin")


def ask(helper: Path, action: str, request: str, env: dict[str, str]) -> str:
    return subprocess.run(
        [str(helper), action],
        input=request,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        check=True,
    ).stdout


def test_get_for_the_configured_host_answers_the_token(helper: Path) -> None:
    assert ask(helper, "get", REQUEST, ENV) == "username=x-access-token\npassword=s3cret\n"
    assert helper.stat().st_mode & 0o777 == 0o500  # read and run only: the agent never rewrites it in place


@pytest.mark.parametrize(
    ("action", "request_text", "env"),
    [
        ("store", REQUEST, ENV),
        ("erase", REQUEST, ENV),
        ("get", REQUEST.replace("git.example.test", "evil.example.test"), ENV),
        ("get", REQUEST.replace("https", "http"), ENV),
        ("get", REQUEST, {**ENV, "AIPM_GIT_TOKEN": ""}),
    ],
    ids=["store", "erase", "other-host", "other-protocol", "no-token"],
)
def test_anything_else_gets_no_answer(
    helper: Path, action: str, request_text: str, env: dict[str, str]
) -> None:
    assert ask(helper, action, request_text, env) == ""
