"""A real moto server process on loopback: the local stand-in for DynamoDB, SSM and Secrets Manager."""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class MotoServerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """Runs moto's server (`python -m aipm.local.moto_server`, see `serve`) on 127.0.0.1 as a child process.

    `start()` waits up to `startup_timeout_s` for it to answer, else raises MotoServerError with its log tail.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 30,
        env: Mapping[str, str] | None = None,
        process_group: int | None = None,
    ) -> None:
        """`env`: the child's whole environment (default: this process's). `process_group`: the group the
        child joins (0: a new group led by it; default: a new session of its own)."""
        self.host = "127.0.0.1"
        self._env = dict(env) if env is not None else None
        self._process_group = process_group
        self.port = port or free_port()
        self._log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        out = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        argv = [sys.executable, "-m", "aipm.local.moto_server", "--host", self.host, "--port", str(self.port)]
        if self._process_group is not None:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self._env, process_group=self._process_group
            )
        else:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self._env, start_new_session=True
            )
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MotoServerError(f"moto server exited with status {self._proc.returncode} at start-up")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):  # noqa: S310
                    log.info("moto server ready", extra={"endpoint": self.endpoint_url})
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise MotoServerError(f"moto server did not answer within {self._startup_timeout_s} s")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    """moto's own server application, handling one request at a time.

    DynamoDB applies each conditional write atomically; moto's backends hold no locks, so with its
    threaded server two concurrent claims of one job could both pass `status = queued`. Connections are
    still accepted concurrently; only request handling is serialised (moto is bound by the GIL anyway).
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="moto's server with serialised request handling (local mode)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
