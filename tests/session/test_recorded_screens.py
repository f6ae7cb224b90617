"""Recorded real transcripts (the bytes Gemini CLI 0.61.0 and Claude Code 2.1.332 printed here, in a 200x50
pseudo-terminal, against the model stand-in; see fixtures/*/README.md) replayed on the rendered screen: the
profiles' ready and busy markers and questions read those screens as a person would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ec2_agent.profiles import builtin_profile
from ec2_agent.sessions.terminal import VirtualScreen

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def recorded(cli: str, part: str) -> str:
    with (FIXTURES / cli / f"{part}.txt").open(encoding="utf-8", newline="") as handle:
        return handle.read()  # newline="": the terminal's CR and CR LF stay as they were


@pytest.mark.parametrize(
    ("cli", "profile_name", "asks"),
    [("gemini", "gemini-terminal", True), ("claude", "claude-terminal", False)],
)
def test_a_recorded_turn_reads_ready_busy_question_ready(cli: str, profile_name: str, asks: bool) -> None:
    profile = builtin_profile(profile_name)
    assert profile.busy_pattern is not None
    screen = VirtualScreen(profile.cols, profile.rows, lambda _: None)
    screen.feed_output(recorded(cli, "start"))
    assert re.search(profile.ready_pattern, screen.text_to_cursor()), screen.text()
    assert not re.search(profile.busy_pattern, screen.text())
    turn = recorded(cli, "turn")
    busy = question = False
    for start in range(0, len(turn), 256):  # as it arrived: in pieces
        screen.feed_output(turn[start : start + 256])
        busy |= re.search(profile.busy_pattern, screen.text()) is not None
        question |= any(re.search(q.pattern, screen.text_to_cursor()) for q in profile.questions)
    assert busy and question == asks
    assert re.search(profile.ready_pattern, screen.text_to_cursor()), screen.text()
    assert "I wrote docs/add-the-zanzibar-report.md" in screen.text()
