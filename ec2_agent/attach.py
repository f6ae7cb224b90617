"""Interactive attach ("Refine with Kiro"): a WebSocket terminal to a CLI session on a PR's branch.

It runs outside the pool's slots, each session in its own workspace, and listens on the agent's private
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

import hmac
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from ec2_agent.sessions import SessionError, TerminalSession
from ec2_agent.workspace import GitError, UnsafeReference, Workspace

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
    """Serves attach sessions on `host:port`; at most `max_sessions` at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token_provider: Callable[[], str],
        work_dir: Path,
        workspace_factory: Callable[[Path], Workspace],
        session_factory: Callable[[Path], TerminalSession],
        max_sessions: int = 2,
    ) -> None:
        self._token_provider = token_provider
        self._work_dir = work_dir
        self._workspace_factory = workspace_factory
        self._session_factory = session_factory
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._server: Server = serve(self._handle, host, port, max_size=MAX_FRAME_BYTES)
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
        return request

    def _serve(self, ws: ServerConnection, request: AttachRequest) -> None:
        root = self._work_dir / uuid.uuid4().hex
        workspace = self._workspace_factory(root)
        session: TerminalSession | None = None
        try:
            tree = workspace.prepare(request.owner, request.repo, request.branch)
            session = self._session_factory(tree)
            session.start()
            log.info(
                "attach session opened",
                extra={"repo": f"{request.owner}/{request.repo}", "branch": request.branch},
            )
            ws.send(json.dumps({"type": "ready"}))
            self._bridge(ws, session, workspace, tree, request)
        except (UnsafeReference, GitError, SessionError) as err:
            _refuse(ws, str(err))
        finally:
            if session is not None:
                session.close()
            shutil.rmtree(root, ignore_errors=True)
            log.info("attach session closed")

    def _bridge(
        self,
        ws: ServerConnection,
        session: TerminalSession,
        workspace: Workspace,
        tree: Path,
        request: AttachRequest,
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
                    ws.send(json.dumps({"type": "finished", "commit": _publish(workspace, tree, request)}))
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


def _publish(workspace: Workspace, tree: Path, request: AttachRequest) -> str | None:
    commit = workspace.commit_all(
        tree, "refine: changes from an interactive session\n\nAttached through the AIPM agent."
    )
    if commit is None:
        return None
    return workspace.push(request.owner, request.repo, request.branch, commit.sha)


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
