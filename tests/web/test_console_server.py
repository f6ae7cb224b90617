"""The local console server: a fixed set of files on loopback, a generated config.json, safe headers."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from aipm.local.console import WEB_DIR, ConsoleServer

API = "http://127.0.0.1:45678"


@pytest.fixture
def console() -> Iterator[ConsoleServer]:
    server = ConsoleServer(api_url=API).start()
    try:
        yield server
    finally:
        server.stop()


def get(
    console: ConsoleServer, path: str, *, method: str = "GET", host: str | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=5)
    headers = {"Host": host} if host else {}
    conn.request(method, path, headers=headers)
    return conn.getresponse()


def test_serves_the_console_and_its_config(console: ConsoleServer) -> None:
    index = get(console, "/")
    assert index.status == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"Generate Code &amp; PR" in index.read()
    for name, ctype in (("app.js", "text/javascript"), ("styles.css", "text/css")):
        resp = get(console, f"/{name}")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith(ctype)
        assert resp.read() == (WEB_DIR / name).read_bytes()
    config = get(console, "/config.json")
    assert json.loads(config.read()) == {"apiUrl": API}
    console.api_url = "http://127.0.0.1:1"
    assert json.loads(get(console, "/config.json").read()) == {"apiUrl": "http://127.0.0.1:1"}


def test_security_headers(console: ConsoleServer) -> None:
    resp = get(console, "/index.html")
    csp = resp.headers["Content-Security-Policy"]
    assert (
        f"connect-src 'self' {API};" in csp
        and "script-src 'self';" in csp
        and "frame-ancestors 'none'" in csp
    )
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"


def test_the_terminal_page_talks_to_the_attach_server_only(console: ConsoleServer) -> None:
    """xterm.js's renderer needs inline styles (xtermjs/xterm.js#4445): allowed on terminal.html alone."""
    console.attach_url = "ws://127.0.0.1:45999/attach"
    assert json.loads(get(console, "/config.json").read())["attachUrl"] == console.attach_url
    page = get(console, "/terminal.html").headers["Content-Security-Policy"]
    assert "connect-src 'self' ws://127.0.0.1:45999;" in page
    assert "style-src 'self' 'unsafe-inline';" in page and "script-src 'self';" in page
    index = get(console, "/").headers["Content-Security-Policy"]
    assert "style-src 'self';" in index and "ws://" not in index


def test_the_vendored_terminal_client_and_its_licence_are_served(console: ConsoleServer) -> None:
    vendor = WEB_DIR / "vendor"
    if not (vendor / "xterm.js").exists():
        pytest.fail("aipm/web/vendor/ is empty: run `make web-vendor`")
    for name, ctype in (
        ("xterm.js", "text/javascript"),
        ("xterm.css", "text/css"),
        ("xterm-LICENSE.txt", "text/plain"),
    ):
        resp = get(console, f"/vendor/{name}")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith(ctype)
        assert resp.read() == (vendor / name).read_bytes()
    assert b"MIT" in (vendor / "xterm-LICENSE.txt").read_bytes()
    assert get(console, "/vendor/.xterm-5.5.0").status == 404  # the make step's marker is not served


@pytest.mark.parametrize(
    "path", ["/../pyproject.toml", "/%2e%2e/README.md", "/web/", "/local/console.py", "/x"]
)
def test_nothing_but_the_console_files(console: ConsoleServer, path: str) -> None:
    assert get(console, path).status == 404


def test_other_hosts_and_methods_are_refused(console: ConsoleServer) -> None:
    assert get(console, "/", host="attacker.example:80").status == 421  # DNS rebinding
    assert get(console, "/", host=f"localhost:{console.port}").status == 200
    assert get(console, "/", method="POST").status == 501
    head = get(console, "/", method="HEAD")
    assert head.status == 200 and head.read() == b""


def test_it_listens_on_loopback_only(console: ConsoleServer) -> None:
    assert console.origin == f"http://127.0.0.1:{console.port}"
    assert console._httpd.server_address[0] == "127.0.0.1"
