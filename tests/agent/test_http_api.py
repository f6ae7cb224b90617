"""The agent's HTTP servers as a network sees them: real servers on loopback, raw sockets.

Content-Length is required and positive on a body, idle and slow connections time out, connections are
bounded, and HEAD/OPTIONS/other methods answer as an ordinary HTTP server does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ec2_agent.http_api import ApiServer, ServerLimits

TOKEN = "agent-token-for-tests"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


@pytest.fixture
def server() -> Iterator[ApiServer]:
    routes = {
        ("GET", "/health"): lambda _body: (200, {"status": "ok"}),
        ("POST", "/echo"): lambda body: (200, {"got": body}),
    }
    limits = ServerLimits(max_body_bytes=1024, idle_timeout_s=0.5, max_connections=4)
    api = ApiServer("127.0.0.1", 0, lambda: TOKEN, routes, limits=limits)
    api.start()
    try:
        yield api
    finally:
        api.stop()


def exchange(port: int, raw: bytes, *, timeout_s: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh connection; (status, headers, body) of the answer, read until the server
    closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def request(method: str, path: str, headers: str = AUTH, body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: agent\r\n{headers}\r\n".encode("latin-1") + body


def test_every_request_needs_the_token(server: ApiServer) -> None:
    for method in ("GET", "HEAD", "OPTIONS", "POST"):
        status, _, _ = exchange(server.port, request(method, "/health", headers=""))
        assert status == 401, method


def test_head_answers_the_gets_headers_without_a_body(server: ApiServer) -> None:
    get_status, get_headers, get_body = exchange(server.port, request("GET", "/health"))
    status, headers, body = exchange(server.port, request("HEAD", "/health"))
    assert (status, body) == (get_status, b"")
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(("path", "allow"), [("/health", "GET, HEAD, OPTIONS"), ("/echo", "POST, OPTIONS")])
def test_options_names_the_allowed_methods(server: ApiServer, path: str, allow: str) -> None:
    status, headers, body = exchange(server.port, request("OPTIONS", path))
    assert (status, headers["allow"], body) == (204, allow, b"")


def test_another_method_is_405_with_allow_and_an_unknown_path_404(server: ApiServer) -> None:
    status, headers, body = exchange(server.port, request("DELETE", "/health"))
    assert (status, headers["allow"], json.loads(body)["error"]) == (
        405,
        "GET, HEAD, OPTIONS",
        "method_not_allowed",
    )
    assert exchange(server.port, request("GET", "/nowhere"))[0] == 404
    assert exchange(server.port, request("BREW", "/health"))[0] == 501  # not HTTP: as http.server answers


def _post(headers: str, body: bytes = b"") -> bytes:
    return request("POST", "/echo", headers=AUTH + headers, body=body)


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ("", 411, "length_required"),
        ("Content-Length: -1\r\n", 400, "invalid_request"),
        ("Content-Length: 0\r\n", 400, "invalid_request"),
        ("Content-Length: +5\r\n", 400, "invalid_request"),
        ("Content-Length: abc\r\n", 400, "invalid_request"),
        ("Content-Length: \u00b2\r\n", 400, "invalid_request"),  # a Latin-1 byte str.isdigit() accepts
        ("Content-Length: 8\r\nContent-Length: 99\r\n", 400, "invalid_request"),
        ("Content-Length: 99999999999\r\n", 413, "payload_too_large"),
        ("Transfer-Encoding: chunked\r\n", 411, "length_required"),
    ],
    ids=[
        "missing",
        "negative",
        "zero",
        "signed",
        "not-a-number",
        "superscript-digit",
        "two-lengths",
        "over-the-cap",
        "chunked",
    ],
)
def test_a_body_needs_a_positive_content_length(
    server: ApiServer, headers: str, status: int, error: str
) -> None:
    got, _, body = exchange(server.port, _post(headers, b'{"a": 1}'))
    assert (got, json.loads(body)["error"]) == (status, error)


def test_a_well_formed_body_is_read(server: ApiServer) -> None:
    data = b'{"a": 1}'
    status, _, body = exchange(server.port, _post(f"Content-Length: {len(data)}\r\n", data))
    assert (status, json.loads(body)) == (200, {"got": {"a": 1}})


def test_an_idle_connection_is_closed(server: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server hangs up; nothing was sent
        assert time.monotonic() - started < 5


def test_a_body_that_stalls_is_closed(server: ApiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post("Content-Length: 100\r\n", b'{"a":'))
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
        assert time.monotonic() - started < 5
    assert data == b"" or b" 408 " in data.split(b"\r\n", 1)[0]


def _held(port: int, count: int) -> list[socket.socket]:
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    time.sleep(0.1)  # the server has accepted them and its threads wait for a request line
    return held


def test_connections_are_bounded_and_the_rest_are_refused_at_once(server: ApiServer) -> None:
    threads_before = threading.active_count()
    held = _held(server.port, 4)
    try:
        started = time.monotonic()
        refused = [exchange(server.port, request("GET", "/health")) for _ in range(20)]
        assert {status for status, _, _ in refused} == {503}
        assert refused[0][1]["retry-after"] == "1"
        assert time.monotonic() - started < 5
        assert threading.active_count() <= threads_before + 4
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert exchange(server.port, request("GET", "/health"))[0] == 200


def test_held_connections_free_their_places_when_they_time_out(server: ApiServer) -> None:
    held = _held(server.port, 4)
    try:
        deadline = time.monotonic() + 5
        status: Any = None
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.2)
            status = exchange(server.port, request("GET", "/health"))[0]
        assert status == 200  # the idle ones were closed after 0.5 s, though their clients stay silent
    finally:
        for sock in held:
            sock.close()
