"""What reaches a terminal: control-character stripping and the constant task prompt.

Nothing a user typed is ever written into the coding-agent CLI's pseudo-terminal. The CLI gets
:func:`task_prompt`, a constant single line that points at ``TASK.md`` in its working directory;
the task text itself lives only in that file. :func:`strip_control` cleans every field before it is
written to a file or a terminal, and :class:`TerminalTextStream` cleans terminal output that arrives
in arbitrary chunks (escape sequences split across reads are held back until they are complete).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["TASK_FILE", "TerminalTextStream", "strip_control", "task_prompt"]

TASK_FILE: Final = "TASK.md"

# Escape sequences, removed as a whole (ECMA-48):
#  - CSI: ESC [ (or C1 0x9b), parameter bytes 0x30-0x3f, intermediate bytes 0x20-0x2f, a final byte 0x40-0x7e;
#  - OSC / DCS / SOS / PM / APC strings: ESC ] P X ^ _ (or C1 0x9d 0x90 0x98 0x9e 0x9f), printable content,
#    then BEL or ST (ESC \ or 0x9c). An unterminated string ends at the next control character;
#  - other escapes: ESC, intermediate bytes, one final byte (ESC ( B, ESC =, ESC 7, ESC \ ...).
_STRING_CONTENT: Final = r"[^\x00-\x1f\x7f-\x9f]*"
_ESCAPE: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    rf"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]){_STRING_CONTENT}(?:\x07|\x9c|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
)
# A suffix that may still become an escape sequence once more output arrives (see TerminalTextStream).
_PARTIAL_ESCAPE: Final = re.compile(
    rf"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_]{_STRING_CONTENT}|[ -/]*)"
    r"|\x9b[0-?]*[ -/]*"
    rf"|[\x90\x98\x9d\x9e\x9f]{_STRING_CONTENT}"
)
_INTRODUCERS: Final = "\x1b\x9b\x90\x98\x9d\x9e\x9f"
# C0 (except the whitespace handled below), DEL, C1, Unicode line/paragraph separators and the
# bidirectional embedding/override/isolate controls (which can disguise text, "Trojan Source").
_CONTROL: Final = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_LINE_BREAK: Final = re.compile("\r\n?|[\n\v\f]")

_TASK_PROMPT: Final = (
    f"Read {TASK_FILE} in the current directory and implement the task it describes: follow its "
    "constraints and satisfy its acceptance criteria, changing only files inside this directory. "
    "Do not commit or push; the caller commits your changes."
)


_ANY_CONTROL: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def visible_controls(text: str) -> str:
    """``text`` with every control character (C0 including line breaks and tabs, DEL, C1, the Unicode
    line/paragraph separators and bidirectional controls) written as a visible ``\\uXXXX`` escape, so
    a name the CLI chose (a file name may hold any byte but ``/`` and NUL) stays one line of text and
    looks like what it is. Other characters are kept."""
    return _ANY_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def strip_control(text: str, *, keep_newlines: bool = False, keep_tabs: bool = False) -> str:
    """Return ``text`` without escape sequences or control characters.

    Escape sequences (CSI, OSC and other string controls, two-byte escapes) are removed whole; the
    remaining C0/C1 controls, DEL, Unicode line separators and bidirectional controls are removed.
    Line breaks (CR LF, CR, LF, VT, FF) become ``\\n`` when ``keep_newlines`` is true and a space
    otherwise; a tab is kept when ``keep_tabs`` is true and becomes a space otherwise. The result
    contains no other control character, and ``strip_control`` is idempotent.
    """
    text = _ESCAPE.sub("", _LINE_BREAK.sub("\n", text))
    text = _CONTROL.sub("", text)
    if not keep_newlines:
        text = text.replace("\n", " ")
    if not keep_tabs:
        text = text.replace("\t", " ")
    return text


class TerminalTextStream:
    """Incremental ``strip_control(..., keep_newlines=True, keep_tabs=True)`` for terminal output.

    Feeding a text in chunks, then calling :meth:`flush`, yields the same text as cleaning it in one
    piece: a trailing partial escape sequence or a trailing CR is held back until the next chunk shows
    how it ends. At most ``max_pending`` characters are held; a longer unterminated sequence is cleaned
    as it stands (the one case where chunked and whole cleaning may differ).
    """

    def __init__(self, max_pending: int = 4096) -> None:
        self._pending = ""
        self._max_pending = max_pending

    def feed(self, chunk: str) -> str:
        """Clean ``chunk`` (continuing earlier chunks) and return the text that is complete so far."""
        text = self._pending + chunk
        split = self._hold_from(text)
        if len(text) - split > self._max_pending:
            split = len(text)
        self._pending = text[split:]
        return strip_control(text[:split], keep_newlines=True, keep_tabs=True)

    def flush(self) -> str:
        """Return whatever is held back, cleaned, and start afresh."""
        text, self._pending = self._pending, ""
        return strip_control(text, keep_newlines=True, keep_tabs=True)

    @staticmethod
    def _hold_from(text: str) -> int:
        start = max(text.rfind(ch) for ch in _INTRODUCERS)
        if start >= 0 and _PARTIAL_ESCAPE.fullmatch(text, start):
            return start
        if text.endswith("\r"):
            return len(text) - 1
        return len(text)


def task_prompt() -> str:
    """Return the prompt sent to the CLI: one constant line, no control characters, no user text."""
    return _TASK_PROMPT
