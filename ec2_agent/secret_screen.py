"""Screening of CLI output for token-shaped secrets before it is stored (job records, PR comments).

The CLI's output tail is shown to people through the API; a hostile or careless CLI may print a credential
it found. Anything shaped like a known credential format is replaced by `[redacted <kind>]`. Formats:
GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`; docs.github.com "About
authentication", token prefixes), AWS access key ids (`AKIA`/`ASIA` + 16; IAM User Guide, "unique
identifiers") and secret keys given with their name, JWTs, PEM private keys, Slack (`xox?-`), OpenAI and
Anthropic (`sk-`, `sk-ant-`), Google API keys (`AIza`), bearer credentials, and `name=value` pairs whose
name says token, secret, password or key.
"""

from __future__ import annotations

import re
from typing import Final

_PATTERNS: Final = (
    ("github token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})")),
    ("aws access key id", re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b")),
    (
        "private key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)"),
    ),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("api key", re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}")),
    ("google api key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("bearer credential", re.compile(r"(?i)\b(?:bearer|token)\s+[A-Za-z0-9._~+/=-]{16,}")),
    (
        "credential",
        re.compile(
            r"(?i)\b([A-Z0-9_.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key)[A-Z0-9_.-]*)"
            r"(\s*[:=]\s*[\"']?)(?!\[redacted)[^\s\"']{8,}"
        ),
    ),
)


def screen_secrets(text: str) -> str:
    """`text` with every token-shaped substring replaced by `[redacted <kind>]` (name=value pairs keep
    their name). Idempotent."""
    for kind, pattern in _PATTERNS:
        if kind == "credential":
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
        else:
            text = pattern.sub(f"[redacted {kind}]", text)
    return text
