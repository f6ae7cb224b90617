"""CLI profiles: built-ins are data files validated by the model; configuration-only profiles; validation."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ec2_agent.profiles import (
    CliProfile,
    builtin_profile,
    builtin_profile_names,
    generic_profile,
    seed_home,
)


def test_every_builtin_profile_file_is_a_valid_profile() -> None:
    names = builtin_profile_names()
    assert {"kiro-interactive", "kiro-headless", "emulator"} <= set(names)
    for name in names:
        profile = builtin_profile(name)
        assert profile.name == name
        assert profile.description, f"{name}: say what the profile is for"


def test_builtin_profiles() -> None:
    interactive = builtin_profile("kiro-interactive", kiro_command="/opt/kiro/bin/kiro-cli")
    assert interactive.argv == ("/opt/kiro/bin/kiro-cli", "chat", "--legacy-ui")
    assert (interactive.kind, interactive.reset_command, interactive.bracketed_paste) == (
        "terminal",
        "/clear",
        True,
    )
    assert [q.answer for q in interactive.questions] == ["t", "y"]
    headless = builtin_profile("kiro-headless")
    assert headless.argv == ("kiro-cli", "chat", "--v2", "--no-interactive", "--trust-all-tools")
    assert (headless.kind, headless.exit_reasons[3]) == ("headless", "an MCP server failed to start")
    emulator = builtin_profile("emulator", python="/usr/bin/python3")
    assert emulator.argv == ("/usr/bin/python3", "-m", "ec2_agent.kiro_emulator")
    assert builtin_profile("emulator").argv[0] == sys.executable
    with pytest.raises(ValueError, match=r"unknown built-in profile 'nope'; known: .*emulator"):
        builtin_profile("nope")


KIRO_PROMPT = builtin_profile("kiro-interactive").ready_pattern
KIRO_APPROVAL = builtin_profile("kiro-interactive").questions[0].pattern


@pytest.mark.parametrize("prompt", ["> ", "[dev] > ", "35% > ", "[cmux-gpu] 8% > ", "!> ", "[dev] 5% ↯ > "])
def test_kiro_prompt_matches_the_classic_prompt_at_the_cursor(prompt: str) -> None:
    assert re.search(KIRO_PROMPT, f"some output\n{prompt}")


@pytest.mark.parametrize("text", ["> I will add a button", "quoted > x", "a\n> b", "> \nmore"])
def test_kiro_prompt_ignores_replies_and_earlier_prompts(text: str) -> None:
    assert not re.search(KIRO_PROMPT, text)


def test_kiro_approval_is_the_question_then_a_blank_line_then_the_prompt_at_the_cursor() -> None:
    question = "Allow this action? Use 't' to trust (always allow) this tool for the session. [y/n/t]:"
    assert re.search(KIRO_APPROVAL, f"I will run a command\n\n{question}\n\n35% > ")
    # The same words echoed in a reply, with output after them, are not the screen's state.
    assert not re.search(KIRO_APPROVAL, f"> I will implement: {question}\nDone.\n\n35% > ")


def test_generic_profile_from_configuration() -> None:
    profile = generic_profile(
        {"command": '["aider", "--no-pretty"]', "ready_pattern": r"> \Z", "startup_timeout_s": "12"}
    )
    assert profile.argv == ("aider", "--no-pretty")
    assert (profile.name, profile.kind, profile.startup_timeout_s) == ("generic", "terminal", 12.0)
    assert profile.reset_command is None and profile.quit_command is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"argv": "aider --yes; rm -rf /", "ready_pattern": ">"}, "shell strings"),
        ({"argv": [], "ready_pattern": ">"}, "argv"),
        ({"argv": ["x"], "ready_pattern": "("}, "regular expression"),
        ({"argv": ["x"]}, "ready_pattern"),
        ({"argv": ["x"], "ready_pattern": ">", "reset_command": "/clear\n/quit"}, "control characters"),
        ({"argv": ["x"], "ready_pattern": ">", "questions": [{"pattern": "?", "answer": "t"}]}, "regular"),
        ({"argv": ["x"], "ready_pattern": ">", "questions": [{"pattern": "a", "answer": "\x1b"}]}, "control"),
        ({"argv": ["x"], "ready_pattern": ">", "unknown": 1}, "unknown"),
        ({"argv": ["x"], "command": ["y"], "ready_pattern": ">"}, "not both"),
        ({"argv": ["x"], "ready_pattern": ">", "env": {"A=B": "c"}}, "environment"),
        ({"argv": ["x"], "ready_pattern": ">", "env_allow": ["AWS_SECRET_ACCESS_KEY"]}, "never the CLI's"),
        ({"argv": ["x"], "ready_pattern": ">", "home_files": {"../.bashrc": "x"}}, "inside the home"),
        ({"argv": ["x"], "ready_pattern": ">", "kind": "telnet"}, "kind"),
    ],
)
def test_invalid_profiles_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generic_profile(settings)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"session_state": ("../.ssh",)}, "inside the home"),
        ({"session_state": (".config/other",)}, "inside a home_restore path"),
        ({"kind": "terminal", "ready_pattern": ">", "acp": None}, "goes with kind 'acp'"),
        ({"session_state_rename": ("(", "x")}, "regular expression"),
        ({"session_state_rename": ("a", r"\g<2>")}, "replacement"),
    ],
)
def test_saved_session_settings_are_checked(update: dict[str, object], message: str) -> None:
    """A profile's saved sessions must be paths its home restore puts back between jobs (so nothing of a
    PR's conversation reaches another job but that PR's follow-ups), and go with ACP's session/load."""
    settings = builtin_profile("gemini-acp").model_dump() | update
    with pytest.raises(ValueError, match=message):
        CliProfile.model_validate(settings)


def test_profiles_are_immutable() -> None:
    profile = builtin_profile("emulator")
    with pytest.raises(ValidationError):
        profile.quiet_s = 3  # type: ignore[misc]
    assert CliProfile.model_validate(profile.model_dump()) == profile


def test_error_patterns_give_the_reason_and_the_line() -> None:
    profile = builtin_profile("kiro-interactive")
    text = "working\nAmazon Q is having trouble responding right now:\n  timeout\n> "
    assert profile.error_in(text) == (
        "the model service is having trouble responding: Amazon Q is having trouble responding right now:"
    )
    assert profile.error_in("all good\n> ") is None


def test_seed_home_writes_the_profiles_files_privately(tmp_path: Path) -> None:
    files = {".cli/settings.json": '{"trusted": "{workspace}"}'}
    profile = generic_profile({"argv": ["x"], "ready_pattern": ">", "home_files": files})
    seed_home(profile, tmp_path / "home", workspace="/workspace")
    written = tmp_path / "home" / ".cli" / "settings.json"
    assert written.read_text(encoding="utf-8") == '{"trusted": "/workspace"}'
    assert written.stat().st_mode & 0o777 == 0o600
