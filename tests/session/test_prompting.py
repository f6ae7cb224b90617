"""strip_control, the streaming cleaner and the constant task prompt."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from ec2_agent.prompting import TASK_FILE, TerminalTextStream, strip_control, task_prompt

# Characters that make escape sequences and control handling interesting, mixed with any text.
_TRICKY = st.sampled_from(
    list("ab ;[]0123?m\\PX^_\t\n\r\v\f\x00\x03\x04\x07\x1b\x7f\x9b\x9c\x9d\u2028\u202e")
)
TERMINAL_TEXT = st.text(alphabet=st.one_of(_TRICKY, st.characters()), max_size=200)
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_removes_escape_sequences_and_controls() -> None:
    raw = "\x1b]0;title\x07\x1b[1;31mred\x1b[0m \x9b2Jcleared\x1bP+q\x1b\\ \x03\x04bell\x07 \u202eevil\x1b(B"
    assert strip_control(raw) == "red cleared bell evil"


def test_line_breaks_and_tabs_only_when_asked() -> None:
    raw = "one\r\ntwo\rthree\nfour\tfive"
    assert strip_control(raw) == "one two three four five"
    assert strip_control(raw, keep_newlines=True, keep_tabs=True) == "one\ntwo\nthree\nfour\tfive"


def test_unterminated_string_control_ends_at_the_next_control() -> None:
    assert strip_control("a\x1b]0;no terminator\nb", keep_newlines=True) == "a\nb"


@given(TERMINAL_TEXT, st.booleans(), st.booleans())
def test_output_has_no_control_characters_and_is_idempotent(text: str, newlines: bool, tabs: bool) -> None:
    cleaned = strip_control(text, keep_newlines=newlines, keep_tabs=tabs)
    assert not _FORBIDDEN.search(cleaned)
    assert newlines or "\n" not in cleaned
    assert tabs or "\t" not in cleaned
    assert strip_control(cleaned, keep_newlines=newlines, keep_tabs=tabs) == cleaned


@given(TERMINAL_TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_stream_cleaning_matches_whole_text_cleaning(text: str, cuts: list[int]) -> None:
    stream = TerminalTextStream()
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    assert "".join(pieces) + stream.flush() == strip_control(text, keep_newlines=True, keep_tabs=True)


def test_stream_holds_a_split_escape_until_it_completes() -> None:
    stream = TerminalTextStream()
    assert stream.feed("done\x1b[3") == "done"
    assert stream.feed("2m> ") == "> "
    assert stream.feed("a\r") == "a"
    assert stream.feed("\nb") == "\nb"


def test_stream_bounds_what_it_holds_back() -> None:
    stream = TerminalTextStream(max_pending=100)
    assert stream.feed("x\x1b]" + "y" * 500) == "x"


def test_task_prompt_is_one_constant_clean_line_pointing_at_task_md() -> None:
    prompt = task_prompt()
    assert prompt == task_prompt()
    assert TASK_FILE in prompt
    assert strip_control(prompt) == prompt
    assert len(prompt.splitlines()) == 1
