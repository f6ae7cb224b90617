"""The sandbox policy the agent builds for a real CLI (ec2_agent.app.sandbox_policy): the CLI must start in
its sandbox with only what the policy mounts. aider (PyPI aider-chat, pinned in aipm/local/clis.toml) lives
in a virtual environment whose `bin/python` links to the base installation the venv was made from (here
pyenv's, under /root): without the environment and that prefix mounted it could not start in its sandbox."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aipm.local.clis import install
from ec2_agent.app import interpreter_dirs, sandbox_policy
from ec2_agent.config import AgentSettings
from ec2_agent.profiles import builtin_profile
from ec2_agent.sandbox import Sandbox


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        records_table="records",
        github_secret_id="github",
        agent_token_secret_id="token",
        work_dir=tmp_path / "work",
        sandbox_network="none",
    )


@pytest.fixture
def aider_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir = install()  # the pinned CLIs (cached after the first run)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield bin_dir


@pytest.mark.slow
def test_aider_starts_in_the_sandbox_its_policy_describes(
    settings: AgentSettings, aider_on_path: Path, tmp_path: Path
) -> None:
    profile = builtin_profile("aider-headless")
    box = Sandbox(tmp_path / "slot", tmp_path / "pristine", sandbox_policy(profile, settings))
    box.start()
    try:
        argv, env = box.command(["aider", "--version"], dict(os.environ))
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        box.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("aider 0.86.2")


def test_a_venv_script_names_its_base_installation(tmp_path: Path) -> None:
    base = tmp_path / "base" / "bin"
    base.mkdir(parents=True)
    (base / "python3.11").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base / "python3.11")
    (venv / "pyvenv.cfg").write_text(f"home = {base}\nversion = 3.11.7\n")
    script = venv / "bin" / "tool"
    script.write_text(f"#!{venv}/bin/python\nimport tool\n")
    assert interpreter_dirs(script) == [str(venv / "bin"), str(base), str(venv), str(tmp_path / "base")]


@pytest.mark.parametrize("first", ["#!/usr/bin/env node\n", "\x7fELF\x02", "", "#!\n", "#!python3\n"])
def test_nothing_more_for_env_binaries_and_odd_lines(tmp_path: Path, first: str) -> None:
    script = tmp_path / "tool"
    script.write_text(first + "rest\n")
    assert interpreter_dirs(script) == []
    assert interpreter_dirs(tmp_path / "missing") == []


@pytest.mark.parametrize("home", ["/", "{tmp}/pybin", "/etc/python/bin", "{tmp}/work/slots/bin"])
def test_a_base_installation_holding_the_agent_s_state_is_never_mounted(
    settings: AgentSettings, tmp_path: Path, home: str
) -> None:
    """A venv's `home` may name a folder whose parent is the root (a venv made from /bin/python3 where /bin is
    not a link: `home = /bin`), holds the agent's work dir, or lies in /etc or the work dir: mounting any
    would show the agent's state to the CLI. Here `{tmp}/pybin`'s parent holds the work dir."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/bin/sh")
    (venv / "pyvenv.cfg").write_text(f"home = {home.format(tmp=tmp_path)}\n")
    (venv / "bin" / "tool").write_text(f"#!{venv}/bin/python\n")
    (venv / "bin" / "tool").chmod(0o755)
    profile = builtin_profile("aider-headless").model_copy(update={"argv": (str(venv / "bin" / "tool"),)})
    binds = [outside for outside, _ in sandbox_policy(profile, settings).ro_binds]
    assert str(venv) in binds
    work = settings.work_dir.resolve()
    assert not [b for b in binds if work.is_relative_to(Path(b).resolve())], binds
    assert not [b for b in binds if Path(b).resolve().is_relative_to(work)], binds
    assert not [b for b in binds if Path(b).resolve().is_relative_to("/etc")], binds
