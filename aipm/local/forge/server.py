"""The forge's HTTP server: GitHub Enterprise's URL layout on a loopback address.

<base>/api/v3/...               REST subset (rest.py)             Authorization: Bearer|token <token>
                                                                  (or a person's token: add_user)
<base>/api/graphql              GraphQL subset (graphql_api.py)   Authorization: Bearer|token <token>
<base>/<owner>/<repo>.git/...   git smart HTTP (git http-backend) HTTP Basic, the token as password
<base>/<owner>/<repo>/pull/<n>  a minimal PR page                 HTTP Basic, or a token header
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aipm.local.forge import graphql_api, rest
from aipm.local.forge.app import DOCS_URL, ForgeApp, ForgeError, Urls
from aipm.local.forge.faults import Fault
from aipm.local.forge.gitrepo import FORGE_LOGIN, GitError
from aipm.local.forge.smart_http import GIT_PATH, is_git_request, run_http_backend
from aipm.local.forge.webhooks import Delivery

log = logging.getLogger(__name__)

API_BODY_LIMIT = 10 * 1024 * 1024  # bytes of a REST or GraphQL request body
GIT_BODY_LIMIT = 200 * 1024 * 1024  # bytes of a push
DIFF_LIMIT = 1_000_000  # characters of the diff shown on a PR page
_PULL_PAGE_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}"
    "main{max-width:60rem;margin:auto;padding:1rem}pre{overflow-x:auto;white-space:pre-wrap}"
    ".diff{background:#f6f8fa;padding:.5rem;white-space:pre}.add{color:#116329;background:#dafbe1}"
    ".del{color:#82071e;background:#ffebe9}.hunk{color:#0550ae}"
    "@media (prefers-color-scheme: dark){body{color:#e6edf3;background:#0d1117}.diff{background:#161b22}"
    ".add{color:#aff5b4;background:#033a16}.del{color:#ffdcd7;background:#67060c}.hunk{color:#79c0ff}}"
)
_PULL_PAGE_CSS_SHA = base64.b64encode(hashlib.sha256(_PULL_PAGE_CSS.encode()).digest()).decode()


def _diff_class(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return "add"
    if line.startswith("-") and not line.startswith("---"):
        return "del"
    return "hunk" if line.startswith("@@") else "ctx"


_PULL_PAGE = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pull/(?P<number>[0-9]{1,9})$")


class _BodyTooLargeError(Exception):
    pass


class _ForgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: ForgeApp, token: str) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.token = token


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aipm-forge/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stalls
    server: _ForgeHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("forge %s - %s", self.address_string(), format % args)

    # ---- dispatch -------------------------------------------------------------------------------------

    def _handle(self) -> None:
        try:
            self._dispatch()
        except _BodyTooLargeError:
            self.close_connection = True
            self._send_json(413, {"message": "Request body is too large", "documentation_url": DOCS_URL})
        except Exception:
            log.exception("forge: %s %s failed", self.command, urlsplit(self.path).path)
            self.close_connection = True
            self._send_json(500, {"message": "Server Error", "documentation_url": DOCS_URL})

    def _dispatch(self) -> None:
        target = urlsplit(self.path)
        path = target.path
        if path == "/api/v3" or path.startswith("/api/v3/"):
            body = self._read_body(API_BODY_LIMIT)
            login = self._rest_login()
            if login is None:
                return
            self._serve_rest(path[len("/api/v3") :] or "/", target.query, body, login)
        elif path == "/api/graphql":
            body = self._read_body(API_BODY_LIMIT)
            if self._token_auth_failed():
                return
            self._serve_graphql(body)
        elif git := GIT_PATH.match(path):
            body = self._read_body(GIT_BODY_LIMIT)
            user = self._basic_user()
            if user is not None:
                self._serve_git(git, target.query, body, user)
        elif page := _PULL_PAGE.match(path):
            # Readable without credentials, like a public repository's PR on GitHub: the console and the
            # CLI link here, and a browser has no token. Read-only; the forge listens on loopback only.
            self._read_body(API_BODY_LIMIT)
            self._serve_pull_page(page)
        else:
            self._read_body(API_BODY_LIMIT)
            self._send_json(404, {"message": "Not Found", "documentation_url": DOCS_URL})

    def _serve_rest(self, path: str, query: str, body: bytes, login: str) -> None:
        found = rest.match(self.command, path)
        if found is None:
            self._send_json(404, {"message": "Not Found", "documentation_url": DOCS_URL, "status": "404"})
            return
        route, params = found
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            self._send_json(400, {"message": "Problems parsing JSON", "documentation_url": DOCS_URL})
            return
        request = rest.ApiRequest(params=params, query=dict(parse_qsl(query)), body=payload, login=login)
        fault = self._begin_call(route.name)
        if fault is not None and not fault.after_effect:
            self._send_fault(fault)
            return
        try:
            answer = route.handler(self.server.app, request)
        except ForgeError as err:
            answer = rest.ApiResponse(err.status, rest.error_body(err))
        if fault is not None:
            self._send_fault(fault)
        elif answer.status == 204:
            self._send(204, b"", "application/json; charset=utf-8", answer.headers.items())
        else:
            self._send_json(answer.status, answer.body, answer.headers.items())

    def _serve_graphql(self, body: bytes) -> None:
        if self.command != "POST":
            self._send_json(404, {"message": "Not Found", "documentation_url": DOCS_URL})
            return
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            self._send_json(400, {"message": "Problems parsing JSON", "documentation_url": DOCS_URL})
            return
        fault = self._begin_call("graphql")
        if fault is not None and not fault.after_effect:
            self._send_fault(fault)
            return
        answer = graphql_api.execute(self.server.app, payload)
        if fault is not None:
            self._send_fault(fault)
        else:
            self._send_json(200, answer)

    def _serve_git(self, found: re.Match[str], query: str, body: bytes, user: str) -> None:
        owner, name, service = unquote(found["owner"]), unquote(found["repo"]), found["service"]
        app = self.server.app
        try:
            app.repository(owner, name)
        except ForgeError:
            self._send(404, b"Repository not found\n", "text/plain; charset=utf-8")
            return
        if not is_git_request(self.command, service, query):
            self._send(403, b"Only the smart HTTP protocol is served\n", "text/plain; charset=utf-8")
            return
        fault = app.faults.record_call("git")
        if fault is not None:
            self._send(
                fault.status,
                f"{fault.message}\n".encode(),
                "text/plain; charset=utf-8",
                fault.headers.items(),
            )
            return
        answer = run_http_backend(
            project_root=app.root,
            path_info=f"/{owner}/{name}.git/{service}",
            method=self.command,
            query=query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            remote_user=user,
        )
        content_type = next((v for k, v in answer.headers if k.lower() == "content-type"), "text/plain")
        others = [(k, v) for k, v in answer.headers if k.lower() not in ("content-type", "content-length")]
        self._send(answer.status, answer.body, content_type, others)

    def _serve_pull_page(self, found: re.Match[str]) -> None:
        app = self.server.app
        if app.faults.record_call("pull_page") is not None:
            self._send(500, b"Injected fault\n", "text/plain; charset=utf-8")
            return
        try:
            repo = app.repository(unquote(found["owner"]), unquote(found["repo"]))
            pull = app.pull(repo, int(found["number"]))
            comments = app.comments(repo, pull.number)
        except ForgeError:
            self._send(404, b"Not Found\n", "text/plain; charset=utf-8")
            return
        e = html.escape
        head = repo.git.branch_tip(pull.head_ref) or pull.head_sha
        base = repo.git.branch_tip(pull.base_ref) or pull.base_sha
        try:
            log = repo.git.git("log", "--format=%H%x00%an%x00%aI%x00%s", f"{base}..{head}").decode()
            diff = repo.git.git("diff", "--stat", "--patch", f"{base}...{head}").decode(errors="replace")
        except GitError:
            log, diff = "", "(the branch is gone)"
        commits = "".join(
            f"<li><code>{e(sha[:12])}</code> {e(subject)} <small>{e(author)}, {e(when)}</small></li>"
            for sha, author, when, subject in (line.split("\0", 3) for line in log.splitlines() if line)
        )
        lines = "".join(
            f"<span class='{_diff_class(line)}'>{e(line)}</span>\n" for line in diff[:DIFF_LIMIT].splitlines()
        )
        items = "".join(f"<li><pre>{e(c.body)}</pre><small>{e(c.created_at)}</small></li>" for c in comments)
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(pull.title)} · Pull Request #{pull.number} · {e(repo.full_name)}</title>"
            f"<style>{_PULL_PAGE_CSS}</style></head><body><main>"
            f"<h1>{e(pull.title)} <span>#{pull.number}</span></h1>"
            f"<p><strong>{e(pull.state)}</strong> · {e(repo.full_name)} · "
            f"<code>{e(pull.head_ref)}</code> → <code>{e(pull.base_ref)}</code> · "
            f"head <code>{e(head)}</code></p>"
            f"<pre>{e(pull.body)}</pre>"
            f"<h2>Commits ({len(log.splitlines())})</h2><ul>{commits}</ul>"
            f"<h2>Files changed</h2><pre class='diff'>{lines}</pre>"
            f"<h2>Comments ({len(comments)})</h2><ul>{items}</ul></main></body></html>"
        )
        csp = f"default-src 'none'; style-src 'sha256-{_PULL_PAGE_CSS_SHA}'"
        headers = [("Content-Security-Policy", csp), ("X-Content-Type-Options", "nosniff")]
        self._send(200, page.encode("utf-8"), "text/html; charset=utf-8", headers)

    # ---- authentication ---------------------------------------------------------------------------------

    def _presented_token(self) -> str | None:
        """The token in `Authorization` (Bearer, token, or Basic's password), None when there is none."""
        scheme, _, value = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token"):
            return value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return ""
            return decoded.partition(":")[2]
        return None

    def _token_matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8"), self.server.token.encode("utf-8"))

    def _rest_login(self) -> str | None:
        """Whose token the REST request carries: the forge's own (FORGE_LOGIN) or a person's (`add_user`);
        answers 401 as `_token_auth_failed` does and returns None otherwise."""
        presented = self._presented_token()
        if presented is not None and not self._token_matches(presented):
            for login, token in list(self.server.app.users.items()):
                if hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8")):
                    return login
        return None if self._token_auth_failed() else FORGE_LOGIN

    def _token_auth_failed(self) -> bool:
        """Answer 401 (GitHub's body) unless the request carries the token; True when it was answered."""
        presented = self._presented_token()
        if presented is None:
            self._send_json(401, {"message": "Requires authentication", "documentation_url": DOCS_URL})
            return True
        if not self._token_matches(presented):
            self._send_json(
                401, {"message": "Bad credentials", "documentation_url": DOCS_URL, "status": "401"}
            )
            return True
        return False

    def _basic_user(self) -> str | None:
        """The user name of valid credentials (Basic, or a token header); answers 401 + a Basic challenge."""
        presented = self._presented_token()
        if presented is not None and self._token_matches(presented):
            header = self.headers.get("Authorization", "")
            if header.lower().startswith("basic "):
                return base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")[0] or "git"
            return "git"
        challenge = [("WWW-Authenticate", 'Basic realm="forge"')]
        self._send(401, b"Authentication required\n", "text/plain; charset=utf-8", challenge)
        return None

    # ---- plumbing ---------------------------------------------------------------------------------------

    def _begin_call(self, route: str) -> Fault | None:
        """Count a REST/GraphQL call, wait the configured latency; the fault that applies, if any."""
        app = self.server.app
        fault = app.faults.record_call(route)
        delay = app.faults.latency_s
        if delay:
            time.sleep(delay)
        return fault

    def _send_fault(self, fault: Fault) -> None:
        body = {"message": fault.message, "documentation_url": DOCS_URL, "status": str(fault.status)}
        self._send_json(fault.status, body, fault.headers.items())

    def _read_body(self, limit: int) -> bytes:
        """The request body (Content-Length or chunked). _BodyTooLargeError beyond `limit` bytes."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            raise _BodyTooLargeError
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise _BodyTooLargeError
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json; charset=utf-8", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class Forge:
    """A running local git forge: bare repositories under `root`, served on a loopback address.

    `token` is the one credential it accepts. `port` 0 picks a free port. Use start()/stop() or `with`.
    """

    def __init__(self, root: Path, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not token:
            raise ValueError("the forge needs a non-empty token")
        try:
            loopback = ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the forge binds IPv4 loopback addresses only, not {host!r}")
        self._app = ForgeApp(Path(root))
        self._token = token
        self._address = (host, port)
        self._server: _ForgeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self._app.urls.base if self._server is not None else "not started"
        return f"Forge(root={str(self._app.root)!r}, {where})"

    def start(self) -> None:
        """Bind and serve in a background thread. OSError if the address is taken."""
        if self._server is not None:
            return
        server = _ForgeHTTPServer(self._address, self._app, self._token)
        host, port = server.server_address[:2]
        self._app.urls = Urls(base=f"http://{host!s}:{port}")
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="forge", daemon=True)
        self._thread.start()
        self._app.webhooks.start()
        log.info("local forge serving %s from %s", self._app.urls.base, self._app.root)

    def stop(self) -> None:
        """Stop serving and release the port (waits for the serving thread)."""
        if self._server is None:
            return
        self._app.webhooks.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Forge:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        self._require_started()
        return self._app.urls.base

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/api/graphql"

    def create_repository(
        self,
        owner: str,
        repo: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
    ) -> Path:
        """A bare repository with one initial commit of `files` (default: a README). Returns its path.

        ValueError for invalid names, FileExistsError if it exists.
        """
        if files is None:
            files = {"README.md": f"# {repo}\n\nA repository of the local forge.\n"}
        return self._app.create_repository(owner, repo, default_branch=default_branch, files=files)

    def clone_url(self, owner: str, repo: str) -> str:
        """The repository's git URL (no credentials in it: git gets them from a credential helper)."""
        return f"{self.base_url}/{owner}/{repo}.git"

    def branches(self, owner: str, repo: str) -> dict[str, str]:
        """Branch name -> tip sha, read from the bare repository now."""
        return self._app.repository(owner, repo).git.branches()

    def pull_requests(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """Every pull request (open and closed) as GET /pulls/{n} shows it, by number."""
        handle = self._app.repository(owner, repo)
        pulls = sorted(self._app.pulls(handle, state="all"), key=lambda pull: pull.number)
        return [rest.pull_json(self._app, handle, pull) for pull in pulls]

    def issues(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """Every issue (not pull request) as GET /issues/{n} shows it, by number."""
        handle = self._app.repository(owner, repo)
        found = sorted(self._app.issues(handle), key=lambda issue: issue.number)
        return [rest.issue_json(self._app, handle, issue) for issue in found]

    def comments(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        """The comments of issue or pull request `number` as GET /issues/{n}/comments shows them."""
        handle = self._app.repository(owner, repo)
        return [rest.comment_json(self._app, handle, number, c) for c in self._app.comments(handle, number)]

    def add_user(self, login: str, token: str) -> None:
        """A person who may call the REST API with `token` as `login` (comments, reviews, labels). Tokens
        are kept in memory only."""
        if not token or token == self._token:
            raise ValueError("a person needs a token of their own")
        self._app.users[login] = token

    def add_collaborator(self, owner: str, repo: str, login: str) -> None:
        """Make `login` a collaborator of owner/repo (author_association COLLABORATOR)."""
        self._app.add_collaborator(self._app.repository(owner, repo), login)

    def add_webhook(self, url: str, secret: str, events: Iterable[str] = ()) -> int:
        """Send the deliveries of `events` (all events when empty) to `url`, signed with `secret`, as a
        GitHub repository or App webhook does (aipm.local.forge.webhooks). Returns the hook id."""
        return self._app.webhooks.add_hook(url, secret, frozenset(events)).id

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery sent or queued (redeliveries too), oldest first."""
        return list(self._app.webhooks.deliveries)

    def redeliver(self, guid: str) -> Delivery:
        """Send a delivery again with its GUID, body and signature (GitHub's "Redeliver")."""
        return self._app.webhooks.redeliver(guid)

    def wait_deliveries(self, timeout_s: float = 30.0) -> bool:
        """Whether every queued webhook delivery was answered (or failed) within `timeout_s`."""
        return self._app.webhooks.wait(timeout_s)

    def review_comments(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        """The review comments of pull request `number` as GET /pulls/{n}/comments shows them."""
        handle = self._app.repository(owner, repo)
        found = self._app.review_comments(handle, number)
        return [rest.review_comment_json(self._app, handle, number, c) for c in found]

    def inject_fault(
        self,
        route: str,
        status: int,
        *,
        nth: int = 1,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        after_effect: bool = False,
    ) -> None:
        """Fail the `nth` next call of `route` (and `times - 1` more) with `status` and `headers`.

        Routes are named in aipm.local.forge.faults.ROUTES. With `after_effect` the call is carried out
        before the error is answered (a request that landed although its answer was lost).
        """
        self._app.faults.inject(
            route, status, nth=nth, times=times, headers=headers, message=message, after_effect=after_effect
        )

    def set_latency(self, seconds: float) -> None:
        """Delay every REST and GraphQL call by `seconds` (benchmarks of round trips)."""
        self._app.faults.set_latency(seconds)

    def clear_faults(self) -> None:
        """Remove every injected fault and the latency."""
        self._app.faults.clear()

    def calls(self, route: str) -> int:
        """How many calls of `route` the forge has received."""
        return self._app.faults.calls(route)

    def _require_started(self) -> None:
        if self._server is None:
            raise RuntimeError("the forge is not started")
