"""A coding agent over the Agent Client Protocol (ACP): JSON-RPC 2.0 on the agent's stdin/stdout.

Uses the ``agent-client-protocol`` SDK (PyPI, 0.12.x; protocol version 1, agentclientprotocol.com) for the
JSON-RPC connection and the typed schema. One persistent agent process per slot (started through the slot's
sandbox, :meth:`CommandSandbox.command`); a new ACP session per job (``session/new`` with ``cwd`` = the
workspace as the agent sees it), so no conversation reaches the next job; :meth:`AcpSession.reset` proves it
with a new session id (the model stand-in's request log proves it at the model, see the tests).

What the SDK leaves to its user, and how this module handles it (measured with the real agents, see
/work/shared/COUNTERPARTS.md):

* the SDK spawns without a new process group and some agents (Gemini CLI, Qwen Code) relaunch themselves as
  a child: the agent leads a session of its own here (``start_new_session``), and ending it signals its
  process group and every descendant found in ``/proc`` (SIGTERM, then SIGKILL after ``kill_grace_s``);
* the SDK pipes stderr and never reads it (a chatty agent would block): a reader keeps a bounded tail, quoted
  in failure reasons;
* the SDK's stdio transport logs and skips a line that is not JSON, leaving the request it answered pending
  forever: this module's transport treats such a line (or one over ``_LINE_LIMIT``) as a protocol violation,
  ends the connection and kills the agent — the task ends ``failed`` with the offending line quoted;
* every request has a deadline (``startup_timeout_s`` for ``initialize`` and the first session,
  ``reset_timeout_s`` for a new session, the job timeout for a prompt), so an agent that never answers ends
  in a typed outcome, never a hung slot;
* cancel and timeout: ``session/cancel``, then up to ``interrupt_timeout_s`` for the prompt's answer (the
  session survives), else the process tree is killed (the pool restarts the session, with backoff);
* an agent whose default mode approves everything ("auto", "yolo") gets the profile's ``acp.mode`` set
  explicitly, so permission requests reach the policy.

The client advertises no file-system or terminal capability: the agent uses its own tools, inside the
sandbox (delegating ``fs/*`` to the client would not contain it — shell commands run inside the agent
anyway). Permission requests are answered by the profile's policy (``acp.permissions``): ``workspace``
allows a tool call whose paths all lie inside the job's workspace (symbolic links resolved) and refuses and
records any aimed outside; ``allow`` and ``refuse`` answer everything alike. Session updates — tool calls,
edits (diffs), plans, agent messages — become the task's transcript lines (``on_output``, the output tail)
and :attr:`AcpSession.steps`.

Thread use: the slot's thread calls every method; the ACP connection lives on an asyncio loop in a thread
of its own. ``cancel`` (a :class:`threading.Event`) may be set from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar, cast

from acp import PROTOCOL_VERSION, Client, RequestError, connect_to_agent, text_block
from acp.client.connection import ClientSideConnection
from acp.meta import CLIENT_METHODS
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileEditToolCallContent,
    Implementation,
    PermissionOption,
    RequestPermissionResponse,
    SessionModeState,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
)
from pydantic import ValidationError

from ec2_agent.profiles import CliProfile
from ec2_agent.prompting import strip_control
from ec2_agent.sandbox import WORKSPACE, Sandbox
from ec2_agent.sessions.base import (
    CommandSandbox,
    OutcomeKind,
    SessionError,
    SessionStartError,
    Tail,
    TaskOutcome,
    Unsandboxed,
    child_environment,
)

__all__ = ["AcpSession"]

logger = logging.getLogger(__name__)

_TICK_S = 0.1  # how promptly cancel, deadlines and output are seen by the slot's thread
_LINE_LIMIT = 16 * 1024 * 1024  # longest JSON-RPC message accepted from the agent (bytes)
_STDERR_LIMIT = 16 * 1024  # bytes of the agent's stderr kept (quoted in failure reasons)
_STEP_LIMIT = 1000  # steps kept per task
_NOTE_TREE_S = 1.0  # how often a running task's process tree is noted (for orphans to kill later)
_PATH_KEYS = (
    "path",
    "file_path",
    "filePath",
    "absolute_path",
    "notebook_path",
    "target_file",
    "dir_path",
    "cwd",
)
_Log = logging.Logger | logging.LoggerAdapter[Any]
# Notifications this client handles: ACP's client methods ("_"-prefixed extensions are routed by the SDK).
_KNOWN_NOTIFICATIONS = frozenset(CLIENT_METHODS.values())
_T = TypeVar("_T")


class _ProtocolViolation(Exception):
    pass


class _StdioTransport:
    """Newline-delimited JSON-RPC on the agent's pipes (the SDK's ``Transport`` protocol). Unlike the SDK's
    own, a line that is not a JSON-RPC 2.0 object ends the connection and is reported (see module doc)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_violation: Callable[[str], None]
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_violation = on_violation

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self._writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        while True:
            try:
                line = await self._reader.readline()
            except ValueError:  # asyncio's limit overrun
                self._on_violation(f"a JSON-RPC message over {_LINE_LIMIT} bytes")
                return None
            if not line:
                return None
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self._on_violation(f"malformed JSON-RPC from the agent: {line[:200]!r}")
                return None
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                self._on_violation(f"not a JSON-RPC 2.0 message: {line[:200]!r}")
                return None
            method = message.get("method")
            unknown = (
                isinstance(method, str) and not method.startswith("_") and method not in _KNOWN_NOTIFICATIONS
            )
            if "id" not in message and unknown:
                # A vendor notification outside ACP (Qwen Code's "qwen/notify/..."): a client ignores what it
                # does not know; the SDK would log each one as an unhandled error with a traceback.
                logger.debug(
                    "ignored an unknown notification from the agent", extra={"method": str(method)[:100]}
                )
                continue
            return message

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()


class _Client:
    """The client side the agent calls (the SDK routes by these method names)."""

    def __init__(self, session: AcpSession) -> None:
        self._session = session

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **_: Any
    ) -> RequestPermissionResponse:
        return self._session._answer_permission(session_id, tool_call, options)

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self._session._record_update(session_id, update)

    async def read_text_file(self, **_: Any) -> None:
        raise RequestError.method_not_found("fs/read_text_file")  # not advertised

    async def write_text_file(self, **_: Any) -> None:
        raise RequestError.method_not_found("fs/write_text_file")  # not advertised


class AcpSession:
    """One ACP agent process for a slot, driven by a profile of kind ``acp`` (see the module docstring).

    ``workdir`` is the job's work tree on this host; ``agent_cwd`` the same directory as the agent sees it
    (default: ``/workspace`` inside a :class:`~ec2_agent.sandbox.Sandbox`, else ``workdir``). ``on_output``
    receives transcript lines on the slot's thread; it must not raise.
    """

    def __init__(
        self,
        profile: CliProfile,
        workdir: Path,
        *,
        transcript_limit_bytes: int = 64 * 1024,
        on_output: Callable[[str], None] | None = None,
        log: _Log | None = None,
        sandbox: CommandSandbox | None = None,
        agent_cwd: str | None = None,
    ) -> None:
        if profile.acp is None:
            raise ValueError(f"{profile.name}: an ACP session needs a profile of kind 'acp'")
        self._profile = profile
        self._acp = profile.acp
        self._workdir = workdir
        inside = WORKSPACE if isinstance(sandbox, Sandbox) else str(workdir)
        self._agent_cwd = agent_cwd or inside
        self._on_output = on_output
        self._log: _Log = log if log is not None else logger
        self._sandbox: CommandSandbox = sandbox if sandbox is not None else Unsandboxed()
        self._tail = Tail(transcript_limit_bytes)
        self._stderr = Tail(_STDERR_LIMIT)
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._spent: list[asyncio.subprocess.Process] = []  # killed, their pipes still to be closed
        self._known: dict[int, int] = {}  # descendants seen: PID -> start time
        self._noted_at = 0.0
        self._conn: ClientSideConnection | None = None
        self._session_id: str | None = None
        self._violation: str | None = None
        self._capabilities: Any = None
        # per task (guarded by _lock: written on the loop's thread, read on the slot's)
        self._steps: deque[dict[str, Any]] = deque(maxlen=_STEP_LIMIT)
        self._message: list[str] = []
        self._tools: dict[str, str] = {}
        self._approvals = 0
        self._refusals: list[str] = []
        self._cancelling = False
        self._in_task = False

    # ------------------------------------------------------------------------------------ state

    @property
    def profile(self) -> CliProfile:
        """The profile this session runs."""
        return self._profile

    @property
    def workdir(self) -> Path:
        """The work tree on this host."""
        return self._workdir

    @property
    def alive(self) -> bool:
        """The agent process runs, its connection is open and an ACP session is ready for a task."""
        process = self._process
        return (
            process is not None
            and process.returncode is None
            and self._violation is None
            and self._session_id is not None
        )

    @property
    def pid(self) -> int | None:
        """The agent process (inside a sandbox: the sandbox's outer process), else ``None``."""
        return self._process.pid if self._process is not None else None

    @property
    def session_id(self) -> str | None:
        """The current ACP session's id (a new one after each :meth:`reset`)."""
        return self._session_id

    @property
    def can_resume(self) -> bool:
        """The agent advertised ``loadSession`` at ``initialize`` and the profile names its
        ``session_state`` (where it keeps saved sessions)."""
        capabilities = self._capabilities
        return bool(capabilities is not None and capabilities.load_session and self._profile.session_state)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The last task's steps, oldest first: ``{"kind": "tool_call"|"edit"|"plan"|"message"|"permission",
        ...}`` (tool calls carry ``id``, ``title``, ``tool_kind``, ``status``, ``paths``; permissions
        ``decision`` and ``reason``). At most the last 1000."""
        with self._lock:
            return list(self._steps)

    @property
    def refusals(self) -> list[str]:
        """Permission requests the policy refused during the last task, one line each."""
        with self._lock:
            return list(self._refusals)

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the agent, ``initialize`` it and open the first ACP session, all within
        ``startup_timeout_s``. Raises :class:`SessionStartError` with the reason (the agent is then killed),
        :class:`SessionError` if it is already running."""
        if self.alive:
            raise SessionError("the session is already running")
        self.close()
        deadline = time.monotonic() + self._profile.startup_timeout_s
        self._violation = None
        self._stderr.clear()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"acp-{self._profile.name}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._spawn(), deadline, "starting the agent")
            conn = self._conn
            assert conn is not None
            response = self._call(
                conn.initialize(
                    protocol_version=PROTOCOL_VERSION,
                    client_capabilities=ClientCapabilities(),
                    client_info=Implementation(name="aipm-agent", title="AIPM agent", version="1"),
                ),
                deadline,
                "initialize",
            )
            if response.protocol_version != PROTOCOL_VERSION:
                raise SessionError(
                    f"the agent speaks ACP protocol version {response.protocol_version}, "
                    f"this client {PROTOCOL_VERSION}"
                )
            self._capabilities = response.agent_capabilities
            self._open_session(deadline)
            self._note_tree()
        except SessionError as err:
            tail = self._stderr.text()
            self._kill("start-up failed")
            self._stop_loop()
            raise SessionStartError(f"{self._profile.name}: {err}{_quote(tail)}", tail) from err
        self._log.info(
            "ACP agent ready",
            extra={"profile": self._profile.name, "pid": self.pid, "acp_session": self._session_id},
        )

    def run_task(
        self,
        prompt: str,
        *,
        timeout_s: float,
        cancel: threading.Event | None = None,
        on_prompt_sent: Callable[[], None] | None = None,
    ) -> TaskOutcome:
        """Send ``prompt`` (``session/prompt``) and wait for the turn's end; answers permission requests on
        the way. Returns within about ``timeout_s`` + ``interrupt_timeout_s`` + twice ``kill_grace_s``.

        ``completed`` on ``end_turn`` (``failed`` when a profile error pattern is in the agent's message);
        ``failed`` for any other stop reason, a JSON-RPC error answer (its message is the reason) or a
        protocol violation; ``crashed`` when the agent exits; ``timed_out`` / ``cancelled`` after
        ``session/cancel`` (the session survives if the agent acknowledged within ``interrupt_timeout_s``,
        else it is killed). Raises ``ValueError`` for a prompt that is not one clean line and
        :class:`SessionError` if the session cannot take a task.
        """
        if not prompt or strip_control(prompt) != prompt:
            raise ValueError("the prompt must be one non-empty line without control characters")
        if not self.alive or self._conn is None or self._session_id is None:
            raise SessionError("the ACP agent is not running; restart the session")
        started = time.monotonic()
        self._begin_task()
        conn, session_id = self._conn, self._session_id
        future = self._submit(conn.prompt(session_id=session_id, prompt=[text_block(prompt)]))
        if on_prompt_sent is not None:
            on_prompt_sent()
        deadline = started + timeout_s
        stopping: Literal["cancelled", "timed_out"] | None = None
        stop_deadline = 0.0
        try:
            while True:
                self._flush_output()
                if time.monotonic() - self._noted_at >= _NOTE_TREE_S:
                    self._noted_at = time.monotonic()
                    self._note_tree()
                try:
                    response = future.result(timeout=_TICK_S)
                    break
                except concurrent.futures.TimeoutError:
                    pass
                now = time.monotonic()
                if stopping is None and ((cancel is not None and cancel.is_set()) or now >= deadline):
                    stopping = "cancelled" if cancel is not None and cancel.is_set() else "timed_out"
                    stop_deadline = now + self._profile.interrupt_timeout_s
                    self._send_cancel(session_id)
                elif stopping is not None and now >= stop_deadline:
                    future.cancel()
                    self._kill(f"no answer to session/cancel within {self._profile.interrupt_timeout_s:g} s")
                    reason = "the agent did not stop after session/cancel and was killed"
                    return self._finish(stopping, started, reason, dead=True)
                if self._process is not None and self._process.returncode is not None and not future.done():
                    # The agent is gone; the connection's EOF resolves the future in a moment.
                    future.result(timeout=self._profile.kill_grace_s)
        except RequestError as err:
            return self._finish(
                stopping or "failed", started, f"the agent answered with an error: {_rpc(err)}"
            )
        except (ConnectionError, concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
            return self._ended(stopping, started)
        except ValidationError as err:
            self._kill("malformed answer to session/prompt")
            return self._finish(
                "failed", started, f"malformed answer to session/prompt: {_first_error(err)}", dead=True
            )
        finally:
            with self._lock:
                self._in_task = False
        reason = response.stop_reason
        if stopping is not None:
            return self._finish(stopping, started, f"session/cancel acknowledged (stop reason {reason})")
        if reason == "end_turn":
            error = self._profile.error_in("".join(self._message))
            if error is not None:
                return self._finish("failed", started, error)
            return self._finish("completed", started, "")
        if reason == "cancelled":
            return self._finish("failed", started, "the agent cancelled the turn by itself")
        return self._finish("failed", started, f"the agent stopped the turn: {reason}")

    def reset(self) -> None:
        """Open a new ACP session (``session/new``) within ``reset_timeout_s``: the next task starts with no
        history. Proven by a new session id. Raises :class:`SessionError` if the agent is not running, does
        not answer in time, or returns the old id (the agent is then killed)."""
        if not self.alive:
            raise SessionError("the ACP agent is not running; restart the session")
        old = self._session_id
        try:
            self._open_session(time.monotonic() + self._profile.reset_timeout_s)
        except SessionError as err:
            self._kill("the reset failed")
            raise SessionError(f"reset failed: {err}{_quote(self._stderr.text())}") from err
        if self._session_id == old:
            self._kill("the reset was not proven")
            raise SessionError(f"reset not proven: the agent returned the old session id {old!r}")

    def resume(self, session_id: str) -> None:
        """Continue the saved ACP session ``session_id`` (``session/load``; the agent finds it among its
        saved sessions, which the caller has put back in its home) within ``reset_timeout_s``. The history
        the agent replays as session updates is not the next task's output (updates count only during a
        task). Raises :class:`SessionError` if the agent cannot load sessions, is not running, refuses or
        does not answer; a new session is then current (:meth:`reset`: if that fails too, the agent is
        killed)."""
        if not self.can_resume:
            raise SessionError(f"{self._profile.name} cannot load saved sessions")
        conn = self._conn
        if not self.alive or conn is None:
            raise SessionError("the ACP agent is not running; restart the session")
        deadline = time.monotonic() + self._profile.reset_timeout_s
        try:
            response = self._call(
                conn.load_session(cwd=self._agent_cwd, session_id=session_id, mcp_servers=[]),
                deadline,
                "session/load",
            )
            self._apply_mode(session_id, response.modes, deadline)
        except SessionError as err:
            self.reset()  # a new conversation after all, never one half loaded
            raise SessionError(f"session/load of {session_id!r} failed: {err}") from err
        self._session_id = session_id

    def restart(self, workdir: Path | None = None) -> None:
        """Close the agent and start it again (in ``workdir`` if given). Raises like :meth:`start`."""
        self.close()
        if workdir is not None:
            if self._agent_cwd == str(self._workdir):  # not sandboxed: the agent sees this host's path
                self._agent_cwd = str(workdir)
            self._workdir = workdir
        self.start()

    def close(self) -> None:
        """End the agent and everything it started: close its stdin, wait ``kill_grace_s``, then SIGTERM and
        SIGKILL to its process group and descendants. Idempotent; never raises."""
        self._note_tree()
        if self._process is not None and self._process.returncode is None and self._loop is not None:
            with contextlib.suppress(SessionError):
                self._call(self._close_stdin(), time.monotonic() + self._profile.kill_grace_s, "closing")
        self._kill("closing")
        self._stop_loop()
        self._session_id = None

    # ------------------------------------------------------------------------- loop plumbing

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro: Coroutine[Any, Any, _T], deadline: float, what: str) -> _T:
        """Run ``coro`` on the loop; SessionError on a deadline, an error answer, or a broken connection."""
        future = self._submit(coro)
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except concurrent.futures.TimeoutError as err:
            future.cancel()
            raise SessionError(f"no answer to {what} in time") from err
        except RequestError as err:
            raise SessionError(f"{what}: the agent answered with an error: {_rpc(err)}") from err
        except ValidationError as err:
            raise SessionError(f"{what}: malformed answer: {_first_error(err)}") from err
        except (ConnectionError, concurrent.futures.CancelledError) as err:
            raise SessionError(self._why_gone(what)) from err
        except OSError as err:
            raise SessionError(f"{what}: {err}") from err

    def _stop_loop(self) -> None:
        loop, thread, conn, spent = self._loop, self._thread, self._conn, self._spent
        self._loop = self._thread = self._conn = None
        self._spent = []
        if loop is None:
            return
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(_quiesce(conn, spent), loop).result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    async def _spawn(self) -> None:
        argv, env = self._sandbox.command(
            list(self._profile.argv), child_environment(self._profile, term=None)
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self._workdir),
                env=env,
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except OSError as err:
            raise SessionError(f"cannot run {argv[0]!r}: {err}") from err
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        self._process = process
        asyncio.get_running_loop().create_task(self._read_stderr(process.stderr))
        transport = _StdioTransport(process.stdout, process.stdin, self._on_violation)
        # The SDK routes only what a client implements (terminal and elicitation calls are optional).
        self._conn = connect_to_agent(cast(Client, _Client(self)), transport)
        self._log.debug("spawned ACP agent", extra={"argv0": argv[0], "pid": process.pid})

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            self._stderr.append(chunk.decode("utf-8", "replace"))

    async def _close_stdin(self) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            process.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=self._profile.kill_grace_s)

    def _on_violation(self, what: str) -> None:
        self._violation = what
        self._log.warning("ACP protocol violation", extra={"profile": self._profile.name, "violation": what})

    def _why_gone(self, what: str) -> str:
        if self._violation is not None:
            return f"{what}: {self._violation}"
        status = self._exit_status()
        return (
            f"{what}: the agent exited (status {status})"
            if status is not None
            else f"{what}: connection lost"
        )

    def _exit_status(self, wait_s: float = 0.0) -> int | None:
        process = self._process
        if process is None:
            return None
        deadline = time.monotonic() + wait_s
        while process.returncode is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return process.returncode

    # ---------------------------------------------------------------------------- ACP sessions

    def _open_session(self, deadline: float) -> None:
        conn = self._conn
        if conn is None:
            raise SessionError("no connection")
        self._session_id = None
        response = self._call(conn.new_session(cwd=self._agent_cwd, mcp_servers=[]), deadline, "session/new")
        self._apply_mode(response.session_id, response.modes, deadline)
        self._session_id = response.session_id

    def _apply_mode(self, session_id: str, modes: SessionModeState | None, deadline: float) -> None:
        """Put a new or loaded session in the profile's mode (``acp.mode``), if it names one."""
        wanted = self._acp.mode
        if wanted is None:
            return
        available = [m.id for m in modes.available_modes] if modes is not None else []
        if wanted not in available:
            raise SessionError(f"the agent has no session mode {wanted!r} (it offers {available})")
        if modes is not None and modes.current_mode_id != wanted and self._conn is not None:
            self._call(
                self._conn.set_session_mode(session_id=session_id, mode_id=wanted),
                deadline,
                "session/set_mode",
            )

    def _send_cancel(self, session_id: str) -> None:
        with self._lock:
            self._cancelling = True
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, OSError):
            self._submit(conn.cancel(session_id=session_id))
        self._emit("[cancel] session/cancel sent")

    # --------------------------------------------------------------------------- the client side

    def _answer_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption]
    ) -> RequestPermissionResponse:
        """The policy's answer (runs on the loop's thread)."""
        title = tool_call.title or self._tools.get(tool_call.tool_call_id, tool_call.tool_call_id)
        with self._lock:
            cancelling = self._cancelling
        if cancelling:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        allowed, why = self._policy(session_id, tool_call)
        kinds = ("allow_once", "allow_always") if allowed else ("reject_once", "reject_always")
        option = next((o for k in kinds for o in options if o.kind == k), None)
        decision = "allowed" if allowed else "refused"
        with self._lock:
            self._steps.append({"kind": "permission", "title": title, "decision": decision, "reason": why})
            if allowed:
                self._approvals += 1
            else:
                self._refusals.append(f"{title}: {why}")
        self._emit(f"[permission {decision}] {title}" + (f": {why}" if why else ""))
        if option is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=option.option_id)
        )

    def _policy(self, session_id: str, tool_call: ToolCallUpdate) -> tuple[bool, str]:
        if session_id != self._session_id:
            return False, f"asked for ACP session {session_id!r}, not the current one"
        policy = self._acp.permissions
        if policy == "allow":
            return True, ""
        if policy == "refuse":
            return False, "the profile's policy refuses every tool"
        if tool_call.kind == "execute" and not self._acp.allow_shell:
            return False, "shell commands are refused by the profile"
        for path in _paths_of(tool_call):
            if not self._inside_workspace(path):
                return False, f"{path} is outside the workspace"
        return True, ""

    def _inside_workspace(self, path: str) -> bool:
        agent_root = PurePosixPath(self._agent_cwd)
        candidate = PurePosixPath(os.path.normpath(agent_root / path))
        if candidate != agent_root and agent_root not in candidate.parents:
            return False
        relative = candidate.relative_to(agent_root)
        real_root = os.path.realpath(self._workdir)
        real = os.path.realpath(self._workdir / relative)  # symbolic links in the tree resolved on this host
        return real == real_root or real.startswith(real_root + os.sep)

    def _record_update(self, session_id: str, update: Any) -> None:
        """Keep a session update as a step and a transcript line (runs on the loop's thread)."""
        with self._lock:
            if session_id != self._session_id or not self._in_task:
                return
        if isinstance(update, AgentMessageChunk):
            text = getattr(update.content, "text", "")
            if text:
                with self._lock:
                    self._message.append(text)
                    self._steps.append({"kind": "message", "text": text[:2000]})
                self._emit(text, raw=True)
        elif isinstance(update, ToolCallStart | ToolCallProgress):
            self._record_tool(update)
        elif isinstance(update, AgentPlanUpdate):
            entries = [f"{e.status}: {e.content}" for e in update.entries]
            with self._lock:
                self._steps.append({"kind": "plan", "entries": entries})
            self._emit("[plan] " + "; ".join(entries))

    def _record_tool(self, update: ToolCallStart | ToolCallProgress) -> None:
        ident = update.tool_call_id
        title = update.title or self._tools.get(ident, ident)
        self._tools[ident] = title
        paths = [loc.path for loc in update.locations or []]
        step = {"kind": "tool_call", "id": ident, "title": title, "tool_kind": update.kind,
                "status": update.status, "paths": paths}  # fmt: skip
        edits = [c.path for c in update.content or [] if isinstance(c, FileEditToolCallContent)]
        with self._lock:
            self._steps.append(step)
            for path in edits:
                self._steps.append({"kind": "edit", "id": ident, "path": path})
        if isinstance(update, ToolCallStart) or update.status in ("completed", "failed"):
            self._emit(
                f"[tool {update.status or 'pending'}] {title}" + (f" ({', '.join(paths)})" if paths else "")
            )
        for path in edits:
            self._emit(f"[edit] {path}")

    # ------------------------------------------------------------------------------ transcript

    def _emit(self, text: str, *, raw: bool = False) -> None:
        line = strip_control(text, keep_newlines=True, keep_tabs=True)
        self._lines.put(line if raw else line + "\n")

    def _flush_output(self) -> None:
        while True:
            try:
                text = self._lines.get_nowait()
            except queue.Empty:
                return
            self._tail.append(text)
            if self._on_output is not None:
                self._on_output(text)

    def _begin_task(self) -> None:
        self._flush_output()
        self._tail.clear()
        with self._lock:
            self._steps.clear()
            self._message.clear()
            self._refusals.clear()
            self._approvals = 0
            self._cancelling = False
            self._in_task = True

    def _ended(self, stopping: Literal["cancelled", "timed_out"] | None, started: float) -> TaskOutcome:
        """The connection broke during a task: a protocol violation, or the agent exited."""
        if self._violation is not None:
            reason = self._violation
            self._kill("protocol violation")
            return self._finish("failed", started, reason, dead=True)
        status = self._exit_status(wait_s=self._profile.kill_grace_s)
        self._kill("the agent's connection ended")
        tail = self._stderr.text()
        if stopping is not None:
            return self._finish(stopping, started, f"the agent exited after session/cancel (status {status})")
        return self._finish(
            "crashed",
            started,
            f"the agent exited during the task (status {status}){_quote(tail)}",
            status=status,
        )

    def _finish(
        self, kind: OutcomeKind, started: float, reason: str, *, dead: bool = False, status: int | None = None
    ) -> TaskOutcome:
        self._flush_output()
        with self._lock:
            approvals = self._approvals
            self._in_task = False
        if dead:
            self._session_id = None
        self._log.info("ACP task ended", extra={"outcome": kind, "reason": reason, "approvals": approvals})
        return TaskOutcome(kind, self._tail.text(), status, time.monotonic() - started, approvals, reason)

    # ---------------------------------------------------------------------------------- killing

    def _note_tree(self) -> None:
        """Remember the agent's descendants (with their start times), so those orphaned when the agent
        exits (re-parented away from it) are still found and killed."""
        if self._process is not None:
            self._known |= _with_start_times(_descendants(self._process.pid))

    def _kill(self, reason: str) -> None:
        """SIGTERM, then SIGKILL, to the agent's process group, every descendant and every process it was
        seen to start that still runs; drop the process."""
        process = self._process
        if process is None:
            return
        pid = process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            victims = _descendants(pid) + _still_running(self._known)
            if process.returncode is None:
                victims.insert(0, pid)
            if not victims:
                break
            self._log.warning(
                "signalling the ACP agent's process tree",
                extra={"pid": pid, "signal": sig.name, "reason": reason, "count": len(victims)},
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            for victim in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, sig)
            deadline = time.monotonic() + self._profile.kill_grace_s
            while time.monotonic() < deadline and not self._all_gone(process):
                time.sleep(0.02)
            if self._all_gone(process):
                break
        self._known.clear()
        self._session_id = None
        self._spent.append(process)
        self._process = None

    def _all_gone(self, process: asyncio.subprocess.Process) -> bool:
        pid = process.pid
        return (
            process.returncode is not None
            and not _descendants(pid)
            and not _group_alive(pid)
            and not _still_running(self._known)
        )


async def _quiesce(conn: ClientSideConnection | None, processes: list[asyncio.subprocess.Process]) -> None:
    """Close the connection (and with it the agent's stdin), let the killed processes' pipe transports
    finish, then cancel what is left, so nothing touches the loop after it is closed."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()
    for process in processes:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=1)
        # asyncio has no public close for a Process; its transport warns (and touches the closed loop) when
        # collected unclosed.
        transport = getattr(process, "_transport", None)
        if transport is not None:
            transport.close()
    for _ in range(3):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (by parent PID in ``/proc``), children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, proc(5) field 22), or ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _with_start_times(pids: list[int]) -> dict[int, int]:
    return {pid: start for pid in pids if (start := _start_time(pid)) is not None}


def _still_running(known: dict[int, int]) -> list[int]:
    """The remembered processes that still run (same PID and start time: not a reused PID)."""
    return [pid for pid, start in known.items() if _start_time(pid) == start]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _paths_of(tool_call: ToolCallUpdate) -> list[str]:
    paths = [loc.path for loc in tool_call.locations or []]
    raw = tool_call.raw_input
    if isinstance(raw, dict):
        paths += [str(raw[k]) for k in _PATH_KEYS if isinstance(raw.get(k), str) and raw[k]]
    return paths


def _rpc(err: RequestError) -> str:
    data = f" {json.dumps(err.data)[:300]}" if getattr(err, "data", None) else ""
    return f"{err}{data}"


def _first_error(err: ValidationError) -> str:
    errors = err.errors()
    if not errors:
        return str(err)
    return f"{'.'.join(str(p) for p in errors[0]['loc'])}: {errors[0]['msg']}"


def _quote(stderr_tail: str) -> str:
    lines = [line for line in stderr_tail.strip().splitlines() if line.strip()]
    return f"; its stderr ends: {' | '.join(lines[-3:])[:500]}" if lines else ""
