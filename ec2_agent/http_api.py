"""The agent's HTTP API, compatible with the prototype: port 8081 (worker pool) and 8082 (PR processor).

Every request needs `Authorization: Bearer <agent token>`. The servers bind to the configured interface
only (the private IP on EC2, loopback locally); the security group admits only the dispatcher.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ec2_agent.pool import AgentPool
from ec2_agent.prompting import strip_control

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
EXECUTE_QUEUE_WAIT_S = 600  # how long an /execute request may wait for a free slot before giving up
Route = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class ProcessPrRequest(BaseModel):
    """The prototype's `/api/process-pr` body; `jobId` is what lets a slot claim the job directly."""

    model_config = ConfigDict(extra="ignore")

    job_id: str | None = Field(default=None, alias="jobId", pattern=r"^[0-9a-f]{32}$")
    pr_number: int = Field(alias="prNumber", ge=1)
    branch: str = Field(min_length=1, max_length=255)
    owner: str = Field(min_length=1, max_length=39)
    repo: str = Field(min_length=1, max_length=100)


class ExecuteRequest(BaseModel):
    """The prototype's `/execute` body: a prompt for the CLI, with its tools auto-approved."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=16_000)
    timeout_ms: int = Field(default=300_000, alias="timeoutMs", ge=1_000, le=3_600_000)


class ApiServer:
    """One token-protected JSON HTTP server with a fixed route table, served from a daemon thread."""

    def __init__(
        self, host: str, port: int, token_provider: Callable[[], str], routes: dict[tuple[str, str], Route]
    ):
        self._token_provider = token_provider
        self._routes = routes
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "aipm-agent"
            sys_version = ""

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"http-{port}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        path = req.path.split("?", 1)[0]
        if not self._authorized(req.headers.get("Authorization", "")):
            self._send(
                req,
                HTTPStatus.UNAUTHORIZED,
                {"error": "unauthorized", "message": "a valid agent token is required"},
            )
            return
        route = self._routes.get((method, path))
        if route is None:
            self._send(
                req, HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no route {method} {path}"}
            )
            return
        try:
            body = self._read_json(req) if method == "POST" else {}
        except ValueError as err:
            self._send(req, HTTPStatus.BAD_REQUEST, {"error": "invalid_request", "message": str(err)})
            return
        try:
            status, answer = route(body)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            answer = {"error": "invalid_request", "field": field, "message": f"{field}: {first['msg']}"}
            status = HTTPStatus.BAD_REQUEST
        self._send(req, status, answer)

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token_provider().encode())

    @staticmethod
    def _read_json(req: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(req.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            raise ValueError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)


def pool_routes(pool: AgentPool) -> dict[tuple[str, str], Route]:
    """Port 8081: the prototype's worker-pool API. `/execute` runs a prompt with auto-approved tools, so
    like every route here it needs the agent token; it waits for a free slot instead of answering 503."""

    def health(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        workers = [
            {
                "id": s.id,
                "busy": s.busy,
                "ready": s.ready,
                "currentTask": s.current_job,
                "idle": s.idle_s,
                "restarts": s.restarts,
            }
            for s in pool.slot_records()
        ]
        status = "draining" if pool.draining else "running"
        return HTTPStatus.OK, {
            "status": status,
            "workers": workers,
            "queued": pool.queued_seen,
            "uptime": round(time.monotonic() - pool.started_at, 1),
        }

    def execute(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = ExecuteRequest.model_validate(body)
        prompt = strip_control(request.prompt).strip()
        if not prompt:
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_request",
                "field": "prompt",
                "message": "prompt is empty",
            }
        timeout_s = request.timeout_ms / 1000
        task = pool.execute(prompt, timeout_s)
        if not task.done.wait(timeout_s + EXECUTE_QUEUE_WAIT_S):
            task.cancel.set()
            return HTTPStatus.OK, {"success": False, "output": "", "timeout": True}
        if task.outcome is None:
            return HTTPStatus.OK, {"success": False, "output": task.error or "", "timeout": False}
        outcome = task.outcome
        return HTTPStatus.OK, {
            "success": outcome.kind == "completed",
            "output": outcome.output_tail,
            "timeout": outcome.kind == "timed_out",
        }

    return {("GET", "/health"): health, ("POST", "/execute"): execute}


def processor_routes(pool: AgentPool) -> dict[tuple[str, str], Route]:
    """Port 8082: the prototype's PR-processor API. `process-pr` is a nudge; the job is in the table."""

    def health(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return HTTPStatus.OK, {"status": "ok", "uptime": round(time.monotonic() - pool.started_at, 1)}

    def process_pr(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = ProcessPrRequest.model_validate(body)
        pool.nudge(request.job_id)
        return HTTPStatus.ACCEPTED, {
            "status": "accepted",
            "prNumber": request.pr_number,
            "branch": request.branch,
        }

    return {("GET", "/health"): health, ("POST", "/api/process-pr"): process_pr}
