"""A git credential helper: answers `get` with the token from AIPM_GIT_TOKEN, for AIPM_GIT_HOST only.

The agent passes the token to git child processes through the environment, so it never appears in a
command line, a remote URL or a log line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping


def answer(action: str, request: Iterable[str], environ: Mapping[str, str]) -> str:
    """The helper's reply to git for `action` given git's key=value request lines."""
    if action != "get":
        return ""
    fields = dict(line.split("=", 1) for line in request if "=" in line)
    token = environ.get("AIPM_GIT_TOKEN")
    if not token or fields.get("host") != environ.get("AIPM_GIT_HOST"):
        return ""
    if fields.get("protocol") not in {"https", environ.get("AIPM_GIT_PROTOCOL", "https")}:
        return ""
    return f"username=x-access-token\npassword={token}\n"


def main() -> int:
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    lines = []
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        if not line:
            break
        lines.append(line)
    sys.stdout.write(answer(action, lines, os.environ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
