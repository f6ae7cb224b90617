"""How the real CLIs are installed (aipm.local.clis) and pointed at the stand-in (model_standin.clients):
the parts that need no registry. (The installed CLIs themselves run in tests/session/test_real_*.py,
tests/acp and tests/e2e.)"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aipm.local.clis import InstallError, console_scripts, load_manifest
from aipm.local.model_standin.clients import REAL_CLIS, client_env, seed_home, standin_profile
from ec2_agent.profiles import builtin_profile, builtin_profile_names


def test_only_the_packages_own_commands_are_linked(tmp_path: Path) -> None:
    """A venv (no pip: nothing fetched) holding a distribution that declares one console script next to a
    dependency that declares another: only the distribution's own is listed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    for dist, script in (("toolcli", "toolcli"), ("somedep", "somedep-tool")):
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[console_scripts]\n{script} = {dist}:main\n")
    assert console_scripts(venv / "bin" / "python", "toolcli") == ["toolcli"]
    with pytest.raises(InstallError, match="cannot list the commands of missing"):
        console_scripts(venv / "bin" / "python", "missing")


def test_every_built_in_profile_of_a_real_cli_is_pinned_and_has_stand_in_settings() -> None:
    manifest = load_manifest()
    assert manifest.npm["@openai/codex"] and manifest.pypi["aider-chat"]
    commands = {Path(builtin_profile(n).argv[0]).name for n in builtin_profile_names()}
    assert {"claude", "codex", "gemini", "qwen", "aider", "codex-acp-linux-x64"} <= commands
    assert set(REAL_CLIS) <= commands


def test_codex_gets_a_config_it_accepts(tmp_path: Path) -> None:
    """Codex 0.171 refuses ``approval_policy = "untrusted"`` (its profiles choose on the command line);
    codex-acp 0.16 needs it so that its commands ask."""
    seed_home("codex", tmp_path / "codex", "http://127.0.0.1:1")
    seed_home("codex-acp-linux-x64", tmp_path / "acp", "http://127.0.0.1:1")
    codex = tomllib.loads((tmp_path / "codex" / ".codex" / "config.toml").read_text())
    acp = tomllib.loads((tmp_path / "acp" / ".codex" / "config.toml").read_text())
    assert "approval_policy" not in codex and acp["approval_policy"] == "untrusted"
    for config in (codex, acp):
        assert config["model_providers"]["standin"]["base_url"] == "http://127.0.0.1:1/v1"
        assert config["analytics"] == {"enabled": False}
    with pytest.raises(ValueError, match="give base_url"):
        seed_home("codex", tmp_path / "x")


def test_the_profiles_home_files_are_merged_over_the_stand_ins(tmp_path: Path) -> None:
    profile = standin_profile(
        builtin_profile("claude-terminal"), "http://127.0.0.1:1", tmp_path / "home", workspace=tmp_path / "ws"
    )
    state = (tmp_path / "home" / ".claude.json").read_text()
    assert '"approved"' in state and str(tmp_path / "ws") in state  # the stand-in's key and the trust
    assert "disableDeepLinkRegistration" in (tmp_path / "home" / ".claude" / "settings.json").read_text()
    assert profile.env["HOME"] == str(tmp_path / "home")
    assert client_env("aider", "http://h")["OPENAI_API_BASE"] == "http://h/v1"
