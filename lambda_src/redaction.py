"""Token-shaped secrets screened out of text the API shows (a job's output tail), as a second line behind
the agent's own screening before it stores the tail.

Shapes (documented prefixes): GitHub tokens `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 characters and
`github_pat_` fine-grained tokens (GitHub Docs, "About authentication to GitHub": token prefixes); AWS access
key ids `AKIA`/`ASIA` + 16 (AWS IAM "Unique identifier prefixes"); `Bearer <token>` headers; JSON Web Tokens
(three base64url parts, the first `eyJ`); `aws_secret_access_key = <40>` assignments.

Linear time (the tail it screens is at most OUTPUT_TAIL_MAX_CHARS, cut by the store): a JWT starts only where
a run of base64url characters begins, so text like `eyJ-eyJ-…` is not rescanned from every `eyJ`.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
_SECRET = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}"
    r"|(?i:aws_secret_access_key)\s*[=:]\s*[A-Za-z0-9/+=]{40}"
)


def screen_secrets(text: str) -> str:
    """`text` with every token-shaped secret replaced by `[redacted]`."""
    return _SECRET.sub(REDACTED, text)
