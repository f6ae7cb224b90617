"""The rendered screen the terminal driver judges: compaction is invisible, queries are answered, the text
up to the cursor is what a person sees."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ec2_agent.sessions.terminal import VirtualScreen

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kiro"

# Pieces of terminal output: plain lines, colours, cursor addressing, erasing, scrolling regions, modes,
# titles, wide characters, bare line feeds and long wrapping lines.
PIECES = [
    "line {n} of plain output\r\n",
    "\x1b[31mred {n}\x1b[0m ",
    "\x1b[2K\r",
    "\x1b[H",
    "\x1b[{n};3H",
    "abc" * 30,
    "\x1b[?2004h",
    "\x1b[?2004l",
    "\r\n" * 3,
    "\x1b]0;title {n}\x07",
    "\x1b[3A",
    "\n" * 12,
    "\x1b[2;6r",
    "\x1b[r",
    "\t\b",
    "é漢字",
    "\r\n" * 25,
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PIECES), st.integers(0, 60)), min_size=50, max_size=1500))
def test_compacting_long_output_shows_the_same_screen(pieces: list[tuple[str, int]]) -> None:
    text = "".join(piece.replace("{n}", str(n)) for piece, n in pieces)
    whole = VirtualScreen(40, 10, lambda _: None)
    whole._stream.feed(text)  # pyte's own rendering of everything
    compacted = VirtualScreen(40, 10, lambda _: None)
    compacted.feed_output(text)
    assert compacted.text() == whole.text()
    assert (compacted.cursor.x, compacted.cursor.y) == (whole.cursor.x, whole.cursor.y)
    assert compacted.mode == whole.mode


def test_terminal_queries_are_answered_from_the_screen() -> None:
    replies: list[str] = []
    screen = VirtualScreen(80, 24, replies.append)
    screen.feed_output("hello\r\n  \x1b[6n\x1b[c\x1b[5n\x1b[?6n")
    assert replies == ["\x1b[2;3R", "\x1b[?6c", "\x1b[0n", "\x1b[2;3R"]


def test_the_kiro_prompt_fixture_renders_as_the_prompt_at_the_cursor() -> None:
    screen = VirtualScreen(80, 24, lambda _: None)
    screen.feed_output("Model: Auto\r\n" + (FIXTURES / "prompt-usage.bin").read_bytes().decode())
    assert screen.text_to_cursor() == "Model: Auto\n35% > "
    assert screen.bracketed_paste
    assert screen.changed() and not screen.changed()


def test_the_input_area_ignores_wrapping_and_box_borders() -> None:
    screen = VirtualScreen(20, 6, lambda _: None)
    screen.feed_output(
        "╭──────────────────╮\r\n│ > Read TASK.md a │\r\n│ nd implement it  │\r\n╰──────────────────╯"
    )
    assert "ReadTASK.mdandimplementit" in screen.input_area(4)
