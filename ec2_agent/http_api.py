"""The agent's HTTP API, compatible with the prototype: port 8081 (worker pool) and 8082 (PR processor).

Every request needs `Authorization: Bearer <agent token>`. The servers bind to the configured interface
only (the private IP on EC2, loopback locally); the security group admits only the dispatcher.

Hardened as a server facing a network (issue 10 item 8): a body needs a positive `Content-Length` (411
without one, 400 if it is not a positive integer, 413 past the cap; chunked bodies are refused); every
connection times out when idle (`idle_timeout_s`, also bounding a slow body); at most `max_connections` are
served at once (the next one is answered 503 and closed at once, so held connections cannot pin threads).
HEAD and OPTIONS answer as a normal HTTP server does (HEAD: the GET's status and headers; OPTIONS: 204 and
`Allow`); another method on a known path is 405 with `Allow`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ec2_agent.intake import JobIntake
from ec2_agent.pool import AgentPool
from ec2_agent.prompting import strip_control
from lambda_src.models import check_branch_name

log = logging.getLogger(__name__)

EXECUTE_QUEUE_WAIT_S = 600  # how long an /execute request may wait for a free slot before giving up
Route = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_DECIMAL = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ServerLimits:
    """`max_body_bytes` per request body; `idle_timeout_s` for any read from a connection (a request line,
    headers or body that does not arrive in time closes it); `max_connections` served at once."""

    max_body_bytes: int = 64 * 1024
    idle_timeout_s: float = 30.0
    max_connections: int = 32


class _Refused(Exception):
    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field is not None:
            answer["field"] = self.field
        return answer


class _BoundedServer(ThreadingHTTPServer):
    """A threading server that serves at most `max_connections` connections at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            body = json.dumps(
                {"error": "too_many_connections", "message": "the server is at its connection limit"}
            ).encode()
            try:
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Retry-After: 1\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ApiServer:
    """One token-protected JSON HTTP server with a fixed route table, served from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        token_provider: Callable[[], str],
        routes: dict[tuple[str, str], Route],
        *,
        limits: ServerLimits = ServerLimits(),
    ):
        self._token_provider = token_provider
        self._routes = routes
        self._limits = limits
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "aipm-agent"
            sys_version = ""
            timeout = limits.idle_timeout_s  # socket timeout of every read: idle and slow connections end

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_HEAD(self) -> None:
                server._handle(self, "HEAD")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

            def do_PATCH(self) -> None:
                server._handle(self, "PATCH")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

            def do_OPTIONS(self) -> None:
                server._handle(self, "OPTIONS")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http " + format, *args)

        self._httpd = _BoundedServer((host, port), Handler, limits.max_connections)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"http-{port}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _allowed(self, path: str) -> list[str]:
        methods = [m for m in _METHODS if (m, path) in self._routes]
        if "GET" in methods:
            methods.append("HEAD")
        return [*methods, "OPTIONS"] if methods else []

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        path = req.path.split("?", 1)[0]
        head = method == "HEAD"
        try:
            if not self._authorized(req.headers.get("Authorization", "")):
                raise _Refused(HTTPStatus.UNAUTHORIZED, "unauthorized", "a valid agent token is required")
            allowed = self._allowed(path)
            if not allowed:
                raise _Refused(HTTPStatus.NOT_FOUND, "not_found", f"no route {method} {path}")
            if method == "OPTIONS":
                self._send(req, HTTPStatus.NO_CONTENT, None, {"Allow": ", ".join(allowed)})
                return
            route = self._routes.get(("GET" if head else method, path))
            if route is None:
                req.close_connection = True  # a body we do not read must not be taken for the next request
                raise _Refused(
                    HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", f"{method} is not allowed on {path}"
                )
            body = self._read_json(req) if method in ("POST", "PUT", "PATCH") else {}
            try:
                status, answer = route(body)
            except ValidationError as err:
                first = err.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                message = f"{field}: {str(first['msg']).removeprefix('Value error, ')}"
                raise _Refused(HTTPStatus.BAD_REQUEST, "invalid_request", message, field) from None
        except _Refused as refused:
            headers = {"Allow": ", ".join(self._allowed(path))} if refused.status == 405 else {}
            self._send(req, refused.status, refused.body(), headers, head)
            return
        self._send(req, status, answer, {}, head)

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token_provider().encode())

    def _read_json(self, req: BaseHTTPRequestHandler) -> dict[str, Any]:
        """The request's JSON object body. Raises _Refused (411, 400, 413) before reading a byte it would
        not accept; a body that stalls ends with the connection's idle timeout."""
        req.close_connection = True
        if req.headers.get("Transfer-Encoding"):
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "length_required", "chunked bodies are not accepted")
        lengths = req.headers.get_all("Content-Length") or []
        if not lengths:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "length_required", "a body needs a Content-Length")
        if len(lengths) > 1:  # RFC 9112 §6.3: several Content-Length headers make the framing invalid
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid_request", "more than one Content-Length")
        raw_length = lengths[0].strip()
        # ASCII digits only: str.isdigit() accepts '²' (a Latin-1 header byte), which int() refuses.
        if not _DECIMAL.fullmatch(raw_length) or int(raw_length) <= 0:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "invalid_request", "Content-Length must be a positive integer"
            )
        length = int(raw_length)
        if length > self._limits.max_body_bytes:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "payload_too_large",
                f"the body exceeds {self._limits.max_body_bytes} bytes",
            )
        try:
            data = req.rfile.read(length)
        except TimeoutError:
            raise _Refused(HTTPStatus.REQUEST_TIMEOUT, "request_timeout", "the body did not arrive") from None
        if len(data) < length:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "invalid_request", "the body is shorter than Content-Length"
            )
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid_request", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid_request", "the body must be a JSON object")
        return body

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        head: bool = False,
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        try:
            req.send_response(status)
            if body is not None:
                req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                req.send_header(name, value)
            req.end_headers()
            if not head:
                req.wfile.write(data)
        except OSError:
            req.close_connection = True  # the client went away


# ---- request bodies (the prototype's, read tolerantly: unknown fields are ignored) ----------------------


def _branch(value: str) -> str:
    check_branch_name(value)
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ProcessPrRequest(_Body):
    """`/api/process-pr`: the prototype Lambda's `{branch, prNumber, taskDetails}` (the seeds add `owner`,
    `repo`); the dispatcher's nudge adds `jobId`. `taskDetails` is accepted and not used: the task is the
    branch's TASK.md."""

    job_id: str | None = Field(default=None, alias="jobId", pattern=r"^[0-9a-f]{32}$")
    pr_number: int = Field(alias="prNumber", ge=1)
    branch: str = Field(min_length=1, max_length=255)
    owner: str | None = Field(default=None, min_length=1, max_length=39, pattern=r"^[A-Za-z0-9-]+$")
    repo: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    task_details: str | None = Field(default=None, alias="taskDetails", max_length=60_000)

    _branch_name = field_validator("branch")(_branch)


class GenerateCodeRequest(_Body):
    """`/generate-code`: seed 000's `{branch, taskDescription, prNumber}`; `taskDescription` is not used."""

    pr_number: int = Field(alias="prNumber", ge=1)
    branch: str = Field(min_length=1, max_length=255)
    owner: str | None = Field(default=None, min_length=1, max_length=39, pattern=r"^[A-Za-z0-9-]+$")
    repo: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    task_description: str | None = Field(default=None, alias="taskDescription", max_length=60_000)

    _branch_name = field_validator("branch")(_branch)


class ExecuteRequest(_Body):
    """The prototype's `/execute` body: a prompt for the CLI, with its tools auto-approved; with `owner`,
    `repo` and `branch` it runs in that branch's workspace (as a job's), else in an empty directory."""

    prompt: str = Field(min_length=1, max_length=16_000)
    timeout_ms: int = Field(default=300_000, alias="timeoutMs", ge=1_000, le=3_600_000)
    owner: str | None = Field(default=None, min_length=1, max_length=39, pattern=r"^[A-Za-z0-9-]+$")
    repo: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    branch: str | None = Field(default=None, min_length=1, max_length=255)

    _branch_name = field_validator("branch")(lambda v: _branch(v) if v is not None else v)


NO_REPOSITORY = (
    "no repository given: the prompt ran in an empty directory (pass owner, repo and branch to run it in "
    "that branch's workspace)"
)


def pool_routes(pool: AgentPool) -> dict[tuple[str, str], Route]:
    """Port 8081: the prototype's worker-pool API. `/execute` runs a prompt with auto-approved tools, so
    like every route here it needs the agent token; it waits for a free slot instead of answering 503."""

    def health(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        slots = pool.slot_records()
        workers = [
            {
                "id": s.id,
                "busy": s.busy,
                "ready": s.ready,
                "currentTask": s.current_job,
                "idle": s.idle_s,
                "restarts": s.restarts,
                "crashes": s.crashes,
                "resets": s.resets,
            }
            for s in slots
        ]
        status = "draining" if pool.draining else "running"
        return HTTPStatus.OK, {
            "status": status,
            "workers": workers,
            "activeRequests": sum(1 for s in slots if s.busy),
            "queuedRequests": pool.pending_adhoc + pool.queued_seen,
            "maxConcurrent": len(slots),
            "queued": pool.queued_seen,
            "uptime": round(time.monotonic() - pool.started_at, 1),
        }

    def execute(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = ExecuteRequest.model_validate(body)
        prompt = strip_control(request.prompt).strip()
        if not prompt:
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid_request", "prompt: is empty", "prompt")
        owner, repo, branch = request.owner, request.repo, request.branch
        repository: tuple[str, str, str] | None = None
        if owner is not None and repo is not None and branch is not None:
            repository = (owner, repo, branch)
        elif owner is not None or repo is not None or branch is not None:
            raise _Refused(
                HTTPStatus.BAD_REQUEST,
                "invalid_request",
                "give owner, repo and branch together, or none",
                "owner" if owner is None else "repo" if repo is None else "branch",
            )
        timeout_s = request.timeout_ms / 1000
        task = pool.execute(prompt, timeout_s, repository=repository)
        workspace: dict[str, Any] = (
            {"repository": f"{request.owner}/{request.repo}", "branch": request.branch}
            if repository
            else {"repository": None, "note": NO_REPOSITORY}
        )
        if not task.done.wait(timeout_s + EXECUTE_QUEUE_WAIT_S):
            task.cancel.set()
            return HTTPStatus.OK, {"success": False, "output": "", "timeout": True, "workspace": workspace}
        if task.outcome is None:
            answer = {"success": False, "output": task.error or "", "timeout": False, "workspace": workspace}
            return HTTPStatus.OK, answer
        outcome = task.outcome
        return HTTPStatus.OK, {
            "success": outcome.kind == "completed",
            "output": outcome.output_tail,
            "timeout": outcome.kind == "timed_out",
            "workspace": workspace,
        }

    return {("GET", "/health"): health, ("POST", "/execute"): execute}


def processor_routes(pool: AgentPool, intake: JobIntake) -> dict[tuple[str, str], Route]:
    """Port 8082: the prototype's PR processor. `/api/process-pr` and `/generate-code` find the PR's job or
    create it from the branch's TASK.md (ec2_agent.intake), then wake a slot: 202 with the job id, or
    403/404/409 with the reason — never an accepted answer for nothing."""

    def health(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return HTTPStatus.OK, {"status": "ok", "uptime": round(time.monotonic() - pool.started_at, 1)}

    def process_pr(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = ProcessPrRequest.model_validate(body)
        if request.job_id is not None:  # the dispatcher's nudge for a job it saw written
            answer = intake.nudge(request.job_id, pr_number=request.pr_number, branch=request.branch)
        else:
            answer = intake.job_for(
                pr_number=request.pr_number,
                branch=request.branch,
                owner=request.owner,
                repo=request.repo,
                source="agent:/api/process-pr",
            )
        if answer.job_id is not None and answer.status == HTTPStatus.ACCEPTED:
            pool.nudge(answer.job_id)
        return answer.status, answer.body

    def generate_code(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = GenerateCodeRequest.model_validate(body)
        answer = intake.job_for(
            pr_number=request.pr_number,
            branch=request.branch,
            owner=request.owner,
            repo=request.repo,
            source="agent:/generate-code",
        )
        if answer.job_id is not None and answer.status == HTTPStatus.ACCEPTED:
            pool.nudge(answer.job_id)
        return answer.status, answer.body

    return {
        ("GET", "/health"): health,
        ("POST", "/api/process-pr"): process_pr,
        ("POST", "/generate-code"): generate_code,
    }
