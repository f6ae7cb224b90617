"""CLI profiles: built-ins, configuration-only profiles, validation."""

from __future__ import annotations

import re
import sys

import pytest
from pydantic import ValidationError

from ec2_agent.profiles import (
    KIRO_APPROVAL_PATTERN,
    KIRO_PROMPT_PATTERN,
    CliProfile,
    builtin_profile,
    generic_profile,
)


def test_builtin_profiles() -> None:
    interactive = builtin_profile("kiro-interactive", kiro_command="/opt/kiro/bin/kiro-cli")
    assert interactive.argv == ("/opt/kiro/bin/kiro-cli", "chat", "--legacy-ui")
    assert (interactive.mode, interactive.approval_answer, interactive.reset_command) == (
        "interactive",
        "t",
        "/clear",
    )
    headless = builtin_profile("kiro-headless")
    assert headless.argv == ("kiro-cli", "chat", "--no-interactive", "--trust-all-tools")
    assert headless.mode == "headless"
    emulator = builtin_profile("emulator", python="/usr/bin/python3")
    assert emulator.argv == ("/usr/bin/python3", "-m", "ec2_agent.kiro_emulator")
    assert builtin_profile("emulator").argv[0] == sys.executable
    with pytest.raises(ValueError, match="unknown"):
        builtin_profile("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "prompt", ["> ", ">", "[dev] > ", "35% > ", "[cmux-gpu] 8% > ", "!> ", "[dev] 5% λ > "]
)
def test_kiro_prompt_pattern_matches_the_classic_prompt_at_the_end(prompt: str) -> None:
    assert re.search(KIRO_PROMPT_PATTERN, f"some output\n{prompt}")


@pytest.mark.parametrize("text", ["> I will add a button\n", "> ", "quoted > \n", "a\n> b"])
def test_kiro_prompt_pattern_ignores_replies_and_earlier_prompts(text: str) -> None:
    assert not re.search(KIRO_PROMPT_PATTERN, text + "more output")


def test_kiro_approval_pattern_matches_kiros_question() -> None:
    question = "Allow this action? Use 't' to trust (always allow) the 'shell' tool for the session. [y/n/t]:"
    assert re.search(KIRO_APPROVAL_PATTERN, f"I will run a command\n\n{question}\n\n35% > ")


def test_generic_profile_from_configuration() -> None:
    profile = generic_profile(
        {"command": '["aider", "--no-pretty"]', "ready_pattern": r"> \Z", "startup_timeout_s": "12"}
    )
    assert profile.argv == ("aider", "--no-pretty")
    assert (profile.name, profile.mode, profile.startup_timeout_s) == ("generic", "interactive", 12.0)
    assert profile.reset_command is None and profile.quit_command is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"argv": "aider --yes; rm -rf /", "ready_pattern": ">"}, "shell strings"),
        ({"argv": [], "ready_pattern": ">"}, "argv"),
        ({"argv": ["x"], "ready_pattern": "("}, "regular expression"),
        ({"argv": ["x"]}, "ready_pattern"),
        ({"argv": ["x"], "ready_pattern": ">", "reset_command": "/clear\n/quit"}, "control characters"),
        ({"argv": ["x"], "ready_pattern": ">", "approval_answer": "t\x1b"}, "control characters"),
        ({"argv": ["x"], "ready_pattern": ">", "unknown": 1}, "unknown"),
        ({"argv": ["x"], "command": ["y"], "ready_pattern": ">"}, "not both"),
        ({"argv": ["x"], "ready_pattern": ">", "env": {"A=B": "c"}}, "environment"),
    ],
)
def test_invalid_profiles_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generic_profile(settings)


def test_profiles_are_immutable() -> None:
    profile = builtin_profile("emulator")
    with pytest.raises(ValidationError):
        profile.settle_s = 3  # type: ignore[misc]
    assert CliProfile.model_validate(profile.model_dump()) == profile
