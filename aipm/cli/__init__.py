"""The `aipm` command line (console script `aipm = "aipm.cli:main"`).

Kept import-light: `python -m aipm.cli.hostcheck` runs on the agent host, which has only the agent's
dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run `aipm` with `argv` (default: the process's arguments); returns the exit code."""
    from aipm.cli.app import main as run

    return run(argv)
