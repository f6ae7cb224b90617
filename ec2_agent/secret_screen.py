"""Screening of CLI output for token-shaped secrets before it is stored (job records, saved sessions).

The CLI's output tail is shown to people through the API, and its saved sessions are kept for the PR's
follow-ups; a hostile or careless CLI may print or log a credential it found. Anything shaped like a known
credential format is replaced by `[redacted <kind>]`. Formats: GitHub tokens (`ghp_`, `gho_`, `ghu_`,
`ghs_`, `ghr_`, `github_pat_`; docs.github.com "About authentication", token prefixes), AWS access key
ids (`AKIA`/`ASIA` + 16; IAM User Guide, "unique identifiers") and secret keys given with their name, JWTs,
PEM private keys, Slack (`xox?-`), OpenAI and Anthropic (`sk-`, `sk-ant-`), Google API keys (`AIza`),
bearer credentials, and `name=value` pairs whose name says token, secret, password or key (at most
NAME_TAIL_MAX_CHARS name characters after the keyword). :class:`Screen` also redacts the exact values of
the credentials the CLI was given (raw, JSON-escaped, base64).

Linear time: Python's regular-expression engine holds the GIL for a whole call, so one slow screen stalls
every thread of the agent (lease renewals, heartbeats, the HTTP server); before, 30 kB of `a.a.a…` took
28.7 s. Every pattern starts at a literal (a prefix such as `ghp_` or `eyJ`, or a keyword), its runs are
bounded or possessive (never given back), and where starts could repeat inside one run (`eyJ-eyJ-…`) a
look-behind lets a match start only where the run begins; so each character is examined a bounded number of
times. `make bench` (bench/screen.py) measures adversarial against benign input of the same size. One call
examines at most SCREEN_MAX_CHARS characters: longer text raises :class:`ScreenTooLarge`, never returned
unscreened nor cut silently; the caller refuses to keep it (a saved session is then not kept). The output
tail is at most OUTPUT_TAIL_MAX_CHARS (8 KiB, `lambda_src.records.models`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Final

SCREEN_MAX_CHARS: Final = 4 * 1024 * 1024  # one call: ~1.5 s at most (bench: screen_at_cap_stall_ms)
NAME_TAIL_MAX_CHARS: Final = 64  # name characters after the keyword of a `name=value` credential
GIVEN_MIN_CHARS: Final = 8  # a shorter value given to the CLI is not screened by value (too common)

# base64url, the characters of JWT parts and of several API keys.
_B64URL = r"A-Za-z0-9_\-"
_PATTERNS: Final = (
    (
        "github token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    ),
    ("aws access key id", re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b")),
    (
        "private key",
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|\Z)"
        ),
    ),
    (
        "jwt",
        re.compile(rf"(?<![{_B64URL}])eyJ[{_B64URL}]{{8,}}+\.eyJ[{_B64URL}]{{8,}}+\.[{_B64URL}]{{8,}}+"),
    ),
    ("slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}+")),
    ("api key", re.compile(rf"\bsk-(?:ant-)?[{_B64URL}]{{20,}}+")),
    ("google api key", re.compile(rf"(?<![{_B64URL}])AIza[{_B64URL}]{{35}}(?![{_B64URL}])")),
    ("bearer credential", re.compile(r"(?i)\b(?:bearer|token)\s++[A-Za-z0-9._~+/=\-]{16,}+")),
)
# `name = value`: anchored at the keyword (a bounded run of name characters may follow it; what precedes it
# is kept as it is, so it need not be matched), then the separator, then a value of 8 or more characters.
_KEYWORDS = r"token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key"
_CREDENTIAL: Final = re.compile(
    rf"(?i)(?:{_KEYWORDS})"
    rf"[A-Z0-9_.\-]{{0,{NAME_TAIL_MAX_CHARS}}}+"
    r"\s*+[:=]\s*+[\"']?+"
    r"(?!\[redacted)[^\s\"']{8,}+"
)
_VALUE_START = re.compile(r"[:=]\s*+[\"']?+(?=[^\s\"']{8})")
_CREDENTIAL_NAME: Final = re.compile(f"(?i){_KEYWORDS}")


def is_credential_name(name: str) -> bool:
    """True if an environment variable's name says it holds a credential (e.g. `ANTHROPIC_API_KEY`,
    `GITHUB_TOKEN`): the keywords of the `name=value` rule."""
    return _CREDENTIAL_NAME.search(name) is not None


class ScreenTooLarge(ValueError):
    """The text is longer than SCREEN_MAX_CHARS; it was not screened."""


def screen_secrets(text: str) -> str:
    """`text` with every token-shaped substring replaced by `[redacted <kind>]` (name=value pairs keep
    their name and separator: `NAME=[redacted]`). Idempotent. Raises ScreenTooLarge if `text` has more
    than SCREEN_MAX_CHARS characters."""
    return Screen().text(text)


class Screen:
    """The secret screen, also redacting the exact `given` values (the credentials the CLI was given,
    e.g. its model-service key): each as it is, JSON-escaped, and base64-encoded (standard and URL-safe,
    in any of the three alignments within a longer stream). Values shorter than GIVEN_MIN_CHARS are not
    screened by value. Never log a Screen's values."""

    def __init__(self, given: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in given:
            if len(value) < GIVEN_MIN_CHARS:
                continue
            raw = value.encode("utf-8", "surrogateescape")
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])
            forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
            forms.update(_base64_forms(raw))
        # Longest first, so a value's longer form is replaced whole; one alternation: one pass.
        ordered = sorted(forms, key=len, reverse=True)
        self._given = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str) -> str:
        """`text` screened (see :func:`screen_secrets`); a given value becomes `[redacted credential]`.
        Raises ScreenTooLarge over SCREEN_MAX_CHARS characters."""
        if len(text) > SCREEN_MAX_CHARS:
            raise ScreenTooLarge(f"{len(text)} characters exceed the secret screen's {SCREEN_MAX_CHARS}")
        if self._given is not None:
            text = self._given.sub("[redacted credential]", text)
        for kind, pattern in _PATTERNS:
            text = pattern.sub(f"[redacted {kind}]", text)
        return _CREDENTIAL.sub(_keep_name, text)

    def data(self, raw: bytes) -> bytes:
        """`raw` bytes screened whatever their encoding: decoded as UTF-8 with every undecodable byte kept
        (surrogateescape), screened, encoded back, so each byte not redacted round-trips exactly.
        Raises ScreenTooLarge over SCREEN_MAX_CHARS bytes."""
        if len(raw) > SCREEN_MAX_CHARS:
            raise ScreenTooLarge(f"{len(raw)} bytes exceed the secret screen's {SCREEN_MAX_CHARS}")
        return self.text(raw.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 characters (standard and URL-safe) that encode `raw` wherever it starts in a longer
    encoded stream: for each of the three alignments, only the characters made of `raw`'s bits alone."""
    forms = set()
    for skip in range(3):
        first, end = -(-8 * skip // 6), 8 * (skip + len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(b"\0" * skip + raw).decode("ascii")[first:end])
    return forms


def _keep_name(match: re.Match[str]) -> str:
    """`NAME = [redacted]` for a credential match (its name and separator kept)."""
    found = match.group(0)
    start = _VALUE_START.search(found)
    assert start is not None  # the pattern's separator and value are there
    return f"{found[: start.end()]}[redacted]"
