"""Git smart HTTP through the real `git http-backend` CGI program (argument list and environment only)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aipm.local.forge.gitrepo import git_environment, git_executable

GIT_PATH = re.compile(
    r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)\.git/(?P<service>info/refs|git-upload-pack|git-receive-pack)$"
)
_SERVICES = ("git-upload-pack", "git-receive-pack")
_BACKEND_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class CgiAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_git_request(method: str, service: str, query: str) -> bool:
    """Only the smart protocol's three endpoints: GET info/refs?service=..., POST to a service."""
    if service == "info/refs":
        return method == "GET" and query in (f"service={name}" for name in _SERVICES)
    return method == "POST" and service in _SERVICES


def run_http_backend(
    *,
    project_root: Path,
    path_info: str,
    method: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    remote_user: str,
) -> CgiAnswer:
    """Serve one request with `git http-backend`; `headers` are the request's, names lower-cased.

    Raises subprocess.TimeoutExpired after 300 s; a failing backend is answered as its CGI output says.
    """
    env = git_environment(
        {
            "GIT_PROJECT_ROOT": str(project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": method,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": "127.0.0.1",
        }
    )
    if "git-protocol" in headers:
        env["GIT_PROTOCOL"] = headers["git-protocol"]
    if "content-encoding" in headers:
        env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
    result = subprocess.run(
        [git_executable(), "http-backend"],
        input=body,
        capture_output=True,
        env=env,
        timeout=_BACKEND_TIMEOUT_S,
        check=False,
    )
    return _parse_cgi(result.stdout)


def _parse_cgi(output: bytes) -> CgiAnswer:
    """Split CGI output into status, headers and body (the `Status:` header sets the status, default 200)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(separator)
        if found:
            break
    else:
        return CgiAnswer(status=502, headers=[("Content-Type", "text/plain")], body=b"bad gateway\n")
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.strip().split()[0])
        elif name.strip():
            headers.append((name.strip(), value.strip()))
    return CgiAnswer(status=status, headers=headers, body=body)
