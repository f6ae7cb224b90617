"""An in-memory HTTP server that speaks the API contract (README "API"), for the CLI's and the console's
contract tests: every route, error shape and status of the contract, with jobs whose progress is scripted
(one step per GET) so tests are deterministic. The end-to-end tests use the real local stack instead."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lambda_src.errors import SIGN_IN_HINT

TOKEN = "fake-api-token"
ME = "tester@example.com"  # who asks with TOKEN, and who asked for every job unless a test says otherwise
HAPPY = ["queued", "claimed", "preparing", "generating", "committing", "pushed", "completed"]
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "no_changes"}
RETRYABLE = {"failed", "timed_out", "cancelled", "no_changes"}
REQUIRED = ("owner", "repo", "branchName", "taskTitle", "objective", "prTitle")
WORKERS = {
    "agents": [
        {
            "agentId": "agent-a",
            "lastSeen": "2026-01-01T00:00:00.000Z",
            "ageS": 3.2,
            "healthy": True,
            "version": "0.1.0",
            "draining": False,
            "slots": [
                {
                    "id": 1,
                    "busy": True,
                    "ready": True,
                    "currentJob": "a" * 32,
                    "idleS": 0,
                    "restarts": 0,
                    "crashes": 0,
                    "resets": 0,
                },
                {
                    "id": 2,
                    "busy": False,
                    "ready": True,
                    "currentJob": None,
                    "idleS": 42.0,
                    "restarts": 1,
                    "crashes": 0,
                    "resets": 1,
                },
            ],
        }
    ],
    "totalSlots": 2,
    "busySlots": 1,
    "healthyAgents": 1,
}


def stamp(n: int) -> str:
    return f"2026-01-01T00:00:{n:02d}.000Z"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeApi:
    """Serve with `with fake.running():`. `script[jobId]`: the statuses a job goes through, one step per
    GET of the job or of the list."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # forced next answers
    answer_headers: list[dict[str, str]] = field(default_factory=list)  # headers of the forced answers
    idempotency: dict[str, str] = field(default_factory=dict)
    missing_routes: set[str] = field(default_factory=set)  # e.g. {"list", "workers"}: answer like no route
    workers: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(WORKERS))  # GET /api/workers
    # A slow GET /api/jobs: how late the answer to a query ({name: [values]}) arrives, in seconds.
    list_delay_s: Callable[[dict[str, list[str]]], float] = lambda _query: 0
    allow_origin: str = "*"
    # When set (a aipm.local.authorizer.CognitoAuthorizer), bearer tokens are ID tokens it must verify, as API
    # Gateway's Cognito authorizer does (the console signs in through the local OIDC stand-in); else TOKEN.
    authorizer: Any = None
    person: Any = None  # who can sign in for the console tests (aipm.local.signin.Person)
    url: str = ""
    _clock: int = 0

    # -- test helpers -------------------------------------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if self.authorizer is None:
            return header == f"Bearer {TOKEN}"
        from aipm.local.authorizer import NotAuthorized

        try:
            self.authorizer.claims(header)
        except NotAuthorized:
            return False
        return True

    def _caller(self, header: str | None) -> str:
        """Who asks: the ID token's e-mail with an authorizer, else the tester (every job's default)."""
        if self.authorizer is None:
            return ME
        return str(self.authorizer.claims(header).get("email", ""))

    def add_job(
        self, title: str, *, status: str = "queued", repo: str = "acme/tools", **fields: Any
    ) -> dict[str, Any]:
        job_id = uuid.uuid4().hex
        self._clock += 1
        job: dict[str, Any] = {
            "jobId": job_id,
            "status": "queued",
            "repo": repo,
            "branchName": f"feature/{title.lower().replace(' ', '-')}-1",
            "baseBranch": "main",
            "prNumber": len(self.jobs) + 1,
            "prUrl": f"https://github.example/{repo}/pull/{len(self.jobs) + 1}",
            "taskTitle": title,
            "createdAt": stamp(self._clock),
            "updatedAt": stamp(self._clock),
            "attempts": 0,
            "maxAttempts": 3,
            "worker": None,
            "commitSha": None,
            "changedFiles": None,
            "error": None,
            "reason": None,
            "outputTail": None,
            "requestedBy": ME,
            "timeline": [{"step": "queued", "at": stamp(self._clock), "detail": "PR opened"}],
        }
        self.jobs[job_id] = job
        if status != "queued":
            self._move(job, status, {})
        job.update(fields)
        return job

    def plan(self, job_id: str, *steps: str | tuple[str, dict[str, Any]]) -> None:
        """The statuses the job moves through, one per GET of the job."""
        self.script[job_id] = [s if isinstance(s, tuple) else (s, {}) for s in steps]

    def happy_plan(self, job_id: str) -> None:
        self.plan(
            job_id,
            ("claimed", {"worker": "agent-a/slot-1", "attempts": 1}),
            "preparing",
            ("generating", {"outputTail": "thinking...\n"}),
            ("committing", {"outputTail": "thinking...\nwrote docs/x.md\n"}),
            ("pushed", {"commitSha": "c" * 40}),
            (
                "completed",
                {"worker": None, "changedFiles": ["docs/x.md"], "reason": "1 file(s) changed: docs/x.md"},
            ),
        )

    def _move(self, job: dict[str, Any], status: str, fields: dict[str, Any]) -> None:
        self._clock += 1
        job["status"] = status
        job["updatedAt"] = stamp(self._clock)
        job["timeline"] = [
            *job["timeline"],
            {"step": status, "at": stamp(self._clock), "detail": f"-> {status}"},
        ]
        job.update(fields)

    def seen(self, method: str, path_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @contextmanager
    def running(self) -> Iterator[FakeApi]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._handle(self)

            do_POST = do_OPTIONS = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()

    # -- the contract ---------------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        parts = urlsplit(req.path)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Request(req.command, req.path, dict(req.headers.items()), body))
        if req.command == "OPTIONS":
            self._send(req, 204, None)
            return
        public = (req.command, parts.path) in (("GET", "/api/health"), ("GET", "/api/openapi.json"))
        if not public and not self._authorized(req.headers.get("Authorization")):
            self._send(req, 401, {"error": "unauthenticated", "message": SIGN_IN_HINT})
            return
        if self.answers:
            status, answer = self.answers.pop(0)
            extra = self.answer_headers.pop(0) if self.answer_headers else {}
            self._send(req, status, answer, extra)
            return
        status, answer = self._route(req.command, parts.path, parse_qs(parts.query), body, req.headers)
        self._send(req, status, answer)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any
    ) -> tuple[int, Any]:
        segments = path.strip("/").split("/")
        if method == "GET" and path == "/api/health":
            return 200, {"status": "ok"}
        if method == "POST" and path in ("/api/personal-delegate", "/api/delegate/personal"):
            return self._delegate(body, headers.get("Idempotency-Key"))
        if method == "GET" and path == "/api/jobs" and "list" not in self.missing_routes:
            return self._list(query, self._caller(headers.get("Authorization")))
        if method == "GET" and path == "/api/workers" and "workers" not in self.missing_routes:
            return 200, self.workers
        if len(segments) >= 3 and segments[:2] == ["api", "jobs"]:
            job = self.jobs.get(segments[2])
            if job is None:
                return 404, {"error": "job_not_found", "message": f"no job {segments[2]}", "field": "jobId"}
            if method == "GET" and len(segments) == 3:
                self._advance(job)
                return 200, job
            if method == "POST" and len(segments) == 4 and segments[3] in ("cancel", "retry"):
                if segments[3] in self.missing_routes:
                    return 404, {"error": "not_found", "message": "no such route"}
                return self._user_action(job, segments[3])
        return 404, {"statusCode": 404, "message": "Not found"}

    def _delegate(self, body: Any, key: str | None) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"error": "invalid_request", "message": "the body is not valid JSON", "field": ""}
        for name in REQUIRED:
            if not body.get(name):
                return 400, {"error": "invalid_request", "message": f"{name}: is required", "field": name}
        if " " in body["branchName"]:
            return 400, {
                "error": "invalid_request",
                "message": "branchName: must not contain spaces",
                "field": "branchName",
            }
        if key and key in self.idempotency:
            job = self.jobs[self.idempotency[key]]
        else:
            job = self.add_job(body["taskTitle"], repo=f"{body['owner']}/{body['repo']}")
            if key:
                self.idempotency[key] = job["jobId"]
            if "fail" in body["taskTitle"].lower():
                self.plan(
                    job["jobId"],
                    ("claimed", {"worker": "agent-a/slot-2", "attempts": 1}),
                    "preparing",
                    ("generating", {"outputTail": "step 1\nstep 2\nTraceback: boom\n"}),
                    (
                        "failed",
                        {"worker": None, "reason": "the CLI exited with status 3", "error": "CliCrashed"},
                    ),
                )
            else:
                self.happy_plan(job["jobId"])
        return 201, {
            "type": "pull_request",
            "html_url": job["prUrl"],
            "number": job["prNumber"],
            "branchName": job["branchName"],
            "confirmationCode": "PR1767225600000",
            "jobId": job["jobId"],
            "statusUrl": f"{self.url}/api/jobs/{job['jobId']}",
        }

    def _advance(self, job: dict[str, Any]) -> None:
        steps = self.script.get(job["jobId"])
        if steps:
            status, fields = steps.pop(0)
            self._move(job, status, fields)

    def _list(self, query: dict[str, list[str]], caller: str) -> tuple[int, Any]:
        time.sleep(self.list_delay_s(query))
        for job in self.jobs.values():  # time passes for every job a list shows
            self._advance(job)
        jobs = sorted(self.jobs.values(), key=lambda j: j["createdAt"], reverse=True)
        if "status" in query:
            jobs = [j for j in jobs if j["status"] == query["status"][0]]
        if "repo" in query:
            jobs = [j for j in jobs if j["repo"] == query["repo"][0]]
        if query.get("mine") == ["true"]:
            jobs = [j for j in jobs if j["requestedBy"] == caller]
        limit = int(query.get("limit", ["25"])[0])
        start = int(query.get("cursor", ["0"])[0])
        # As the API: a PR's follow-ups (`followUps`) only in GET /api/jobs/{id}, never in a list.
        page = [{k: v for k, v in j.items() if k != "followUps"} for j in jobs[start : start + limit]]
        more = start + limit < len(jobs)
        return 200, {"jobs": page, "nextCursor": str(start + limit) if more else None}

    def _user_action(self, job: dict[str, Any], action: str) -> tuple[int, Any]:
        if action == "cancel" and job["status"] not in TERMINAL:
            self.script.pop(job["jobId"], None)
            self._move(job, "cancelled", {"reason": "cancelled by tester@example.com", "worker": None})
            return 200, job
        if action == "retry" and job["status"] in RETRYABLE:
            self._clock += 1
            job["timeline"] = [
                *job["timeline"],
                {"step": "retried", "at": stamp(self._clock), "detail": "by tester"},
            ]
            job.update(status="queued", attempts=0, reason=None, error=None)
            self.happy_plan(job["jobId"])
            return 200, job
        return 409, {
            "error": "invalid_transition",
            "message": f"cannot {action} job {job['jobId']}: it is {job['status']}",
        }

    def _send(
        self, req: BaseHTTPRequestHandler, status: int, body: Any, extra: dict[str, str] | None = None
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        req.send_response(status)
        for name, value in (extra or {}).items():
            req.send_header(name, value)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.send_header("Access-Control-Allow-Origin", self.allow_origin)
        req.send_header("Access-Control-Allow-Headers", "Authorization,Content-Type,Idempotency-Key")
        req.send_header("Access-Control-Allow-Methods", "GET,POST,OPTIONS")
        req.end_headers()
        req.wfile.write(data)
