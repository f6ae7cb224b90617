"""The local stack's command-line options, shared by `python -m aipm.local.stack` and `aipm local`.

Import-light on purpose: `aipm --help` builds every parser, and must work with only the `cli` extra
installed (the stack itself needs the `local` extra).
"""

from __future__ import annotations

import argparse

DEFAULT_PORT = 8765  # the API; the console is on the next port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the local stack's options to `parser`."""
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the API's port (default {DEFAULT_PORT}); the console uses the next one, the forge the one "
        "after; 0 picks free ports (and a new token) every start",
    )
    parser.add_argument("--slots", type=int, default=2, help="slots per agent (default 2)")
    parser.add_argument("--agents", type=int, default=1, help="agent processes on the one queue (default 1)")
    parser.add_argument(
        "--work-s", type=float, default=2.0, help="seconds of simulated work per emulator task"
    )
    parser.add_argument(
        "--cli",
        default="emulator",
        metavar="PROFILE",
        help="the agent's CLI profile (default emulator); a real CLI's profile (gemini-acp, qwen-acp, ...) "
        "runs it against the model stand-in (install the CLIs first: make clis)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (logs, repositories) after stopping"
    )
    parser.add_argument(
        "--stop-grace-s",
        type=float,
        default=10.0,
        help="seconds the agents get to finish their jobs after Ctrl-C or SIGTERM (default 10)",
    )
