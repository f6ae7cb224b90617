"""Command line of the forge: serve a directory of repositories until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from aipm.local.forge.server import Forge

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Start a forge; print its base URL on one line once it accepts requests; stop on SIGTERM/SIGINT.

    --repo OWNER/REPO (repeatable) creates that repository first unless it exists.
    """
    parser = argparse.ArgumentParser(prog="python -m aipm.local.forge", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="directory of the bare repositories")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the accepted token")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument(
        "--repo", action="append", default=[], metavar="OWNER/REPO", help="repository to create"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    token = args.token_file.read_text(encoding="utf-8").strip()
    if not token:
        parser.error(f"{args.token_file} holds no token")
    forge = Forge(args.root, token, host=args.host, port=args.port)
    for full_name in args.repo:
        owner, _, name = full_name.partition("/")
        if not (args.root / owner / f"{name}.git").exists():
            try:
                forge.create_repository(owner, name)
            except ValueError as err:
                parser.error(f"--repo {full_name}: {err}")

    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("forge stopping on signal %d", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with forge:
        sys.stdout.write(f"{forge.base_url}\n")
        sys.stdout.flush()
        stopping.wait()
