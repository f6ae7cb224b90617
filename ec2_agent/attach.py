"""Interactive attach ("Refine with Kiro"): a WebSocket terminal to a CLI session on a PR's branch.

It runs outside the pool's slots, each session in its own workspace and sandbox, only on a job's branch of
an allowed owner (never the default branch), and listens on the agent's private
interface only (ops reach it through SSM port forwarding). Protocol, JSON text frames:

- client → agent, first frame within AUTH_TIMEOUT_S:
  ``{"type": "attach", "token", "owner", "repo", "branch"}``
- agent → client: ``{"type": "ready"}``, then ``{"type": "output", "data"}`` frames (raw terminal output)
- client → agent: ``{"type": "input", "data"}`` (keystrokes), ``{"type": "resize", "rows", "cols"}``,
  ``{"type": "finish"}`` (commit what changed and push it to the branch; answered
  ``{"type": "finished", "commit": sha | null}``)
- agent → client on a refusal: ``{"type": "error", "message"}``, then close.

A session that closes without "finish" discards its changes.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Origin

from ec2_agent.faults import SlotFault
from ec2_agent.sandbox import Sandbox, remove_tree
from ec2_agent.sessions import SessionError, TerminalSession
from ec2_agent.workspace import (
    Checkout,
    GitError,
    TreeRefused,
    UnsafeReference,
    Workspace,
    check_job_reference,
)

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10
READ_TICK_S = 0.05
MAX_FRAME_BYTES = 64 * 1024


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern="^attach$")
    token: str = Field(min_length=1, max_length=512)
    owner: str = Field(min_length=1, max_length=39)
    repo: str = Field(min_length=1, max_length=100)
    branch: str = Field(min_length=1, max_length=255)


class AttachServer:
    """Serves attach sessions on `host:port`; at most `max_sessions` at once.

    Refused before any git or CLI runs: a browser whose `Origin` is not `console_origin` (the handshake
    answers 403; a client without an Origin header, such as the CLI over SSM port forwarding, still needs
    the token), a wrong token, an owner not in `allowed_owners`, the repository's default branch, and any
    branch that is not a job's (`is_job_branch`). The session runs in a sandbox of its own, like a slot's.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token_provider: Callable[[], str],
        work_dir: Path,
        workspace_factory: Callable[[Path], Workspace],
        sandbox_factory: Callable[[Path], Sandbox],
        session_factory: Callable[[Sandbox], TerminalSession],
        is_job_branch: Callable[[str, str, str], bool],
        allowed_owners: frozenset[str],
        console_origin: str | None,
        max_sessions: int = 2,
    ) -> None:
        self._token_provider = token_provider
        self._work_dir = work_dir
        self._workspace_factory = workspace_factory
        self._sandbox_factory = sandbox_factory
        self._session_factory = session_factory
        self._is_job_branch = is_job_branch
        self._allowed_owners = frozenset(o.lower() for o in allowed_owners)
        self._slots = threading.BoundedSemaphore(max_sessions)
        origins: list[Origin | None] = [None]
        if console_origin:
            origins.append(Origin(console_origin))
        self._server: Server = serve(self._handle, host, port, max_size=MAX_FRAME_BYTES, origins=origins)
        self._thread = threading.Thread(target=self._server.serve_forever, name="attach", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()

    def _handle(self, ws: ServerConnection) -> None:
        try:
            request = self._authenticate(ws)
        except (ValueError, TimeoutError, ConnectionClosed) as err:
            _refuse(ws, str(err) if isinstance(err, ValueError) else "no attach request in time")
            return
        if not self._slots.acquire(blocking=False):
            _refuse(ws, "too many attach sessions are open; try again later")
            return
        try:
            self._serve(ws, request)
        finally:
            self._slots.release()

    def _authenticate(self, ws: ServerConnection) -> AttachRequest:
        raw = ws.recv(timeout=AUTH_TIMEOUT_S)
        try:
            request = AttachRequest.model_validate_json(raw)
        except ValidationError as err:
            raise ValueError("the first frame must be an attach request") from err
        if not hmac.compare_digest(request.token.encode(), self._token_provider().encode()):
            raise ValueError("unauthorized")
        check_job_reference(request.owner, request.repo, request.branch)
        if request.owner.lower() not in self._allowed_owners:
            raise ValueError(f"owner {request.owner!r} is not allowed (AIPM_ALLOWED_OWNERS)")
        return request

    def _serve(self, ws: ServerConnection, request: AttachRequest) -> None:
        key = uuid.uuid4().hex
        root = self._work_dir / "attach" / key
        sandbox = self._sandbox_factory(root)
        workspace = self._workspace_factory(sandbox.tree)
        session: TerminalSession | None = None
        checkout: Checkout | None = None
        owner, repo, branch = request.owner, request.repo, request.branch
        try:
            if branch == workspace.default_branch(owner, repo):
                raise UnsafeReference(f"{branch!r} is the repository's default branch")
            if not self._is_job_branch(owner, repo, branch):
                raise UnsafeReference(f"{branch!r} is not the branch of a job on {owner}/{repo}")
            sandbox.start()
            checkout = workspace.prepare(f"attach-{key}", owner, repo, branch)
            session = self._session_factory(sandbox)
            session.start()
            log.info("attach session opened", extra={"repo": f"{owner}/{repo}", "branch": branch})
            ws.send(json.dumps({"type": "ready"}))
            self._bridge(ws, session, workspace, checkout)
        except (UnsafeReference, GitError, SessionError, SlotFault, TreeRefused) as err:
            _refuse(ws, str(err))
        finally:
            if session is not None:
                session.close()
            with contextlib.suppress(SlotFault):
                sandbox.stop()
            if checkout is not None:
                workspace.discard(checkout)
            remove_tree(root)
            log.info("attach session closed")

    def _bridge(
        self, ws: ServerConnection, session: TerminalSession, workspace: Workspace, checkout: Checkout
    ) -> None:
        stop = threading.Event()
        pump = threading.Thread(
            target=_pump_output, args=(ws, session, stop), name="attach-output", daemon=True
        )
        pump.start()
        try:
            for frame in ws:
                message = _parse(frame)
                kind = message.get("type")
                if kind == "input" and isinstance(message.get("data"), str):
                    session.write_raw(message["data"])
                elif kind == "resize":
                    session.resize(
                        _bounded(message.get("rows"), 10, 200), _bounded(message.get("cols"), 20, 500)
                    )
                elif kind == "finish":
                    stop.set()
                    pump.join(timeout=5)
                    ws.send(json.dumps({"type": "finished", "commit": _publish(workspace, checkout)}))
                    ws.close()
                    return
        except ConnectionClosed:
            log.info("attach client went away; changes discarded")
        finally:
            stop.set()


def _pump_output(ws: ServerConnection, session: TerminalSession, stop: threading.Event) -> None:
    """Forward the CLI's raw output to the client until `stop`, the CLI's exit, or the client's departure."""
    try:
        while not stop.is_set():
            data = session.read_raw(READ_TICK_S)
            if data is None:
                ws.send(json.dumps({"type": "exit"}))
                return
            if data:
                ws.send(json.dumps({"type": "output", "data": data}))
    except ConnectionClosed:
        return


def _publish(workspace: Workspace, checkout: Checkout) -> str | None:
    commit = workspace.commit_all(
        checkout, "refine: changes from an interactive session\n\nAttached through the AIPM agent."
    )
    if commit is None:
        return None
    return workspace.push(checkout, commit.sha)


def _parse(frame: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(frame)
    except json.JSONDecodeError:
        return {}
    return message if isinstance(message, dict) else {}


def _bounded(value: object, low: int, high: int) -> int:
    return max(low, min(high, value if isinstance(value, int) else low))


def _refuse(ws: ServerConnection, message: str) -> None:
    try:
        ws.send(json.dumps({"type": "error", "message": message}))
        ws.close(code=1008, reason="refused")
    except ConnectionClosed:
        pass
