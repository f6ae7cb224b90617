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
