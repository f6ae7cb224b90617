"""The web console in local mode: a static file server on 127.0.0.1 for `aipm/web/`.

It serves the console's files (`aipm/web/`, the terminal client vendored into `aipm/web/vendor/` by `make
web-vendor`, and the repository's README.md as README.txt, plain text, which the footer links to) and a
generated `config.json` — `{"apiUrl": ..., "auth": {"domain": ..., "issuer": ..., "clientId": ...},
"attachUrl": ...}`, the local API's base URL, the sign-in (the local OIDC stand-in) and, once an agent
runs, its attach WebSocket — the same file the CDK app writes next to the console in S3 (without
`attachUrl`). GET and HEAD only, a fixed set of files, no directory listings, and requests whose Host is
not this loopback address are refused (DNS rebinding).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
README = WEB_DIR.parent.parent / "README.md"  # absent from a wheel install: then the link answers 404
TERMINAL = "/terminal.html"  # the attach terminal's page
CONTENT_TYPES = {
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


class ConsoleServer:
    """Serves the console on 127.0.0.1 from a daemon thread. `api_url` may be set after start."""

    def __init__(
        self,
        web_dir: Path = WEB_DIR,
        *,
        port: int = 0,
        api_url: str = "",
        auth: dict[str, str] | None = None,
        attach_url: str = "",
    ) -> None:
        self.web_dir = web_dir
        self.api_url = api_url
        self.auth = auth
        self.attach_url = attach_url
        vendor = web_dir / "vendor"
        self._files = {
            f"/{p.relative_to(web_dir).as_posix()}": p
            for p in [*web_dir.iterdir(), *(vendor.iterdir() if vendor.is_dir() else ())]
            if p.is_file() and p.suffix in CONTENT_TYPES
        }
        if README.is_file():
            self._files["/README.txt"] = README  # text/plain, as the CDK app uploads it
        if "/index.html" not in self._files:
            raise FileNotFoundError(f"no index.html in {web_dir}")
        console = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "aipm-console"
            sys_version = ""

            def do_GET(self) -> None:
                console._serve(self, body=True)

            def do_HEAD(self) -> None:
                console._serve(self, body=False)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("console " + format, *args)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        """The browser origin of the console (the API's CORS origin in local mode)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="console", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def _serve(self, req: BaseHTTPRequestHandler, *, body: bool) -> None:
        host = req.headers.get("Host", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            self._send(req, 421, "text/plain; charset=utf-8", b"wrong Host\n", body=body)
            return
        path = urllib.parse.urlsplit(req.path).path
        if path == "/":
            path = "/index.html"
        if path == "/config.json":
            config: dict[str, object] = {"apiUrl": self.api_url}
            if self.auth:
                config["auth"] = self.auth
            if self.attach_url:
                config["attachUrl"] = self.attach_url
            data = json.dumps(config).encode()
            self._send(req, 200, CONTENT_TYPES[".json"], data, body=body)
            return
        file = self._files.get(path)
        if file is None:
            self._send(req, 404, "text/plain; charset=utf-8", b"not found\n", body=body)
            return
        self._send(
            req, 200, CONTENT_TYPES[file.suffix], file.read_bytes(), body=body, terminal=path == TERMINAL
        )

    def _send(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        ctype: str,
        data: bytes,
        *,
        body: bool,
        terminal: bool = False,
    ) -> None:
        """`terminal`: the attach page's policy — it talks to the attach WebSocket only, and xterm.js's
        renderer sets inline styles (xtermjs/xterm.js#4445), which no other page of the console may."""
        if terminal:
            origins, styles = _origin(self.attach_url), "'self' 'unsafe-inline'"
        else:
            origins = " ".join(
                o for o in (_origin(self.api_url), _origin((self.auth or {}).get("domain", ""))) if o
            )
            styles = "'self'"
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(data)))
        req.send_header("Cache-Control", "no-store")
        req.send_header("X-Content-Type-Options", "nosniff")
        req.send_header("Referrer-Policy", "no-referrer")
        req.send_header("X-Frame-Options", "DENY")
        req.send_header(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'self'; style-src {styles}; img-src 'self' data:; "
            f"connect-src 'self' {origins}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'; "
            "object-src 'none'",
        )
        req.end_headers()
        if body:
            req.wfile.write(data)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the AIPM web console on 127.0.0.1.")
    parser.add_argument("--api-url", required=True, help="the API base URL written into config.json")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    console = ConsoleServer(port=args.port, api_url=args.api_url).start()
    print(f"console {console.url}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        console.stop()


if __name__ == "__main__":
    main()
