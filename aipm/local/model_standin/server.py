"""The model stand-in's HTTP server: loopback only, one thread per connection (stdlib ``http.server``,
as the forge uses), HTTP/1.1 keep-alive with chunked streams.

Routes (any base path prefix before these is accepted, e.g. ``/v1``):

| route | API |
|---|---|
| ``POST …/messages``, ``POST …/messages/count_tokens`` | Anthropic Messages |
| ``POST …/chat/completions`` | OpenAI Chat Completions |
| ``POST …/responses`` | OpenAI Responses |
| ``POST …/models/<model>:streamGenerateContent`` / ``:generateContent`` / ``:countTokens`` | Gemini |
| ``GET …/models`` | a one-model list (OpenAI shape) |

Every model request needs an API key (``x-api-key``, ``Authorization: Bearer``, ``x-goog-api-key`` or
``?key=``), as the real services do; the key itself is never logged.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aipm.local.model_standin.script import ModelDirectives, next_action
from aipm.local.model_standin.shapes import Api, conversation, error_body, render, sse_content_type

__all__ = ["Faults", "LoggedRequest", "ModelStandin"]

log = logging.getLogger(__name__)

BODY_LIMIT = 32 * 1024 * 1024  # bytes of one request body
LOG_TEXT_LIMIT = 512 * 1024  # characters of a request body kept in the request log
_TICK_S = 0.2
_GEMINI = re.compile(
    r"/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent|countTokens)$"
)


@dataclass
class Faults:
    """Switches for fault tests, applied to every model request while set (thread-safe to replace).

    ``delay_s`` waits before answering; ``error_status`` answers that HTTP status with the API's error
    document; ``quota`` answers 429 with the API's quota-exceeded error; ``hang`` never answers (the
    connection is held until the client goes away or the server closes); ``malformed`` streams a frame
    that is not JSON. ``remaining`` limits how many requests the switches affect (``None``: all).
    """

    delay_s: float = 0.0
    error_status: int | None = None
    quota: bool = False
    hang: bool = False
    malformed: bool = False
    remaining: int | None = None


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the stand-in saw it.

    ``text`` is the request body (at most ``LOG_TEXT_LIMIT`` characters), ``stage`` the step answered
    (``read``/``write``/``final``/``whole-file``/``side``/``json``/``count``/``error``/``hang``...),
    ``service_ms`` the time from the request line to the last byte of the reply (includes
    ``delay_ms``, the injected wait).
    """

    seq: int
    at: float
    api: str
    method: str
    path: str
    model: str
    stage: str
    status: int
    service_ms: float
    delay_ms: float
    text: str


@dataclass
class _State:
    faults: Faults = field(default_factory=Faults)
    log: deque[LoggedRequest] = field(default_factory=lambda: deque(maxlen=5000))
    seq: int = 0
    waiting: int = 0  # requests held by a delay or hang right now
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    log_file: Path | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _Handler)
        self.state = state


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aipm-model-standin/1.0"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("model stand-in: " + format, *args)

    # ------------------------------------------------------------------------------- routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.endswith("/models"):
            self._json(
                200, {"object": "list", "data": [{"id": "standin", "object": "model", "owned_by": "aipm"}]}
            )
        else:
            self._json(404, {"error": {"message": f"no route GET {path}"}})

    def do_POST(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        path = url.path
        try:
            raw = self._body()
        except ValueError as exc:
            self._json(400, {"error": {"message": str(exc)}})
            return
        gemini = _GEMINI.search(path)
        api: Api | None
        if path.endswith("/messages/count_tokens"):
            self._answer_count("anthropic", path, raw, started)
            return
        if gemini is not None and gemini.group("method") == "countTokens":
            self._answer_count("gemini", path, raw, started)
            return
        if path.endswith("/messages"):
            api = "anthropic"
        elif path.endswith("/chat/completions"):
            api = "chat"
        elif path.endswith("/responses"):
            api = "responses"
        elif gemini is not None:
            api = "gemini"
        else:
            api = None
        if api is None:
            self._record("none", path, "", "unrouted", 404, started, 0.0, raw)
            self._json(404, {"error": {"message": f"no route POST {path}"}})
            return
        if not self._has_key(url.query):
            self._record(api, path, "", "unauthenticated", 401, started, 0.0, raw)
            self._json(401, error_body(api, 401, quota=False) | {"detail": "no API key given"})
            return
        self._answer(api, path, raw, started, gemini.group("model") if gemini else None)

    # ----------------------------------------------------------------------------- answering

    def _answer(self, api: Api, path: str, raw: bytes, started: float, gemini_model: str | None) -> None:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            action = next_action(conversation(api, body))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            self._record(api, path, "", "bad-request", 400, started, 0.0, raw)
            self._json(400, error_body(api, 400, quota=False) | {"detail": str(exc)})
            return
        model = gemini_model or str(body.get("model", "standin"))
        stream = bool(body.get("stream")) or (api == "gemini" and "streamGenerateContent" in path)
        faults = self._take_faults(action.directives)
        try:
            delay_ms = self._delay(faults.delay_s)
            if faults.hang:
                self._hold()
                self._record(api, path, model, "hang", 0, started, delay_ms, raw)
                return
            if faults.error_status is not None or faults.quota:
                status = 429 if faults.quota else int(faults.error_status or 500)
                stage = "quota" if faults.quota else "error"
                self._record(api, path, model, stage, status, started, delay_ms, raw)
                self._json(status, error_body(api, status, quota=faults.quota))
                return
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            frames = list(render(api, action, model=model, stream=stream, include_usage=include_usage))
            if faults.malformed:
                frames = [b"data: {this is not json\n\n"]
        except _ClientGone:
            self._record(api, path, model, "client-gone", 0, started, 0.0, raw)
            self.close_connection = True
            return
        # Logged before the reply is written, so a client that has the reply finds it in the log.
        self._record(api, path, model, action.stage, 200, started, delay_ms, raw)
        try:
            if stream or api == "responses":
                self._stream(frames)
            else:
                self._send(200, "application/json", b"".join(frames))
        except _ClientGone:
            self.close_connection = True

    def _answer_count(self, api: Api, path: str, raw: bytes, started: float) -> None:
        tokens = max(1, len(raw) // 4)
        payload = {"input_tokens": tokens} if api == "anthropic" else {"totalTokens": tokens}
        self._record(api, path, "", "count", 200, started, 0.0, raw)
        self._json(200, payload)

    def _take_faults(self, directives: ModelDirectives) -> Faults:
        state = self.server.state
        with state.lock:
            current = state.faults
            active = current.remaining is None or current.remaining > 0
            if active and current.remaining is not None:
                current.remaining -= 1
            chosen = Faults(**asdict(current)) if active else Faults()
        chosen.delay_s = max(chosen.delay_s, directives.slow_s)
        chosen.hang = chosen.hang or directives.hang
        chosen.quota = chosen.quota or directives.quota
        if chosen.error_status is None:
            chosen.error_status = directives.error_status
        return chosen

    def _client_gone(self) -> bool:
        """True once the client closed its end (readable with nothing to read)."""
        sock: socket.socket = self.connection
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _delay(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        start = time.monotonic()
        deadline = start + seconds
        with self._waiting():
            while (remaining := deadline - time.monotonic()) > 0:
                if self.server.state.closing.wait(min(_TICK_S, remaining)) or self._client_gone():
                    raise _ClientGone
        return (time.monotonic() - start) * 1000

    def _hold(self) -> None:
        with self._waiting():
            while not self.server.state.closing.wait(_TICK_S):
                if self._client_gone():
                    break
        self.close_connection = True

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        state = self.server.state
        with state.lock:
            state.waiting += 1
        try:
            yield
        finally:
            with state.lock:
                state.waiting -= 1

    # ------------------------------------------------------------------------------- writing

    def _has_key(self, query: str) -> bool:
        headers = self.headers
        bearer = headers.get("Authorization", "")
        return bool(
            headers.get("x-api-key")
            or headers.get("x-goog-api-key")
            or (bearer.lower().startswith("bearer ") and bearer[7:].strip())
            or parse_qs(query).get("key")
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > BODY_LIMIT:
            raise ValueError(f"request body over {BODY_LIMIT} bytes")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        else:
            raw = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        return raw

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            total += size
            if total > BODY_LIMIT:
                raise ValueError(f"request body over {BODY_LIMIT} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientGone from exc

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        try:
            self._send(status, "application/json", json.dumps(payload).encode())
        except _ClientGone:
            self.close_connection = True

    def _stream(self, frames: Iterable[bytes]) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", sse_content_type)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for frame in frames:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _record(
        self,
        api: str,
        path: str,
        model: str,
        stage: str,
        status: int,
        started: float,
        delay_ms: float,
        raw: bytes,
    ) -> None:
        state = self.server.state
        text = raw[: LOG_TEXT_LIMIT * 4].decode("utf-8", "replace")[:LOG_TEXT_LIMIT]
        with state.lock:
            state.seq += 1
            entry = LoggedRequest(
                seq=state.seq,
                at=time.time(),
                api=api,
                method=self.command,
                path=path,
                model=model,
                stage=stage,
                status=status,
                service_ms=(time.monotonic() - started) * 1000,
                delay_ms=delay_ms,
                text=text,
            )
            state.log.append(entry)
            if state.log_file is not None:
                with state.log_file.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(entry)) + "\n")


class ModelStandin:
    """The stand-in on ``127.0.0.1`` (port 0: any free port), served by a background thread.

    Use as a context manager, or :meth:`start` / :meth:`close`. ``base_url`` is ``http://127.0.0.1:<port>``;
    the per-API base URLs the CLIs want are :attr:`anthropic_base_url` (no ``/v1``),
    :attr:`openai_base_url` (``…/v1``) and :attr:`gemini_base_url`. ``log_file`` (optional) receives the
    request log as JSON lines. Raises ``OSError`` if the port cannot be bound.
    """

    def __init__(self, *, port: int = 0, log_file: Path | None = None) -> None:
        self._state = _State(log_file=log_file)
        self._server = _Server(("127.0.0.1", port), self._state)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def gemini_base_url(self) -> str:
        return self.base_url

    def start(self) -> ModelStandin:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="model-standin", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; held (``hang``) and delayed requests end at once. Idempotent."""
        self._state.closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ModelStandin:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -------------------------------------------------------------------------- test switches

    def set_faults(self, faults: Faults) -> None:
        """Apply ``faults`` to the following requests (``Faults()`` clears them)."""
        with self._state.lock:
            self._state.faults = faults

    def requests(self) -> list[LoggedRequest]:
        """The request log so far (oldest first, at most the last 5000)."""
        with self._state.lock:
            return list(self._state.log)

    def requests_since(self, seq: int) -> list[LoggedRequest]:
        """Requests logged after sequence number ``seq``."""
        return [r for r in self.requests() if r.seq > seq]

    def waiting(self) -> int:
        """How many requests a delay or hang is holding right now."""
        with self._state.lock:
            return self._state.waiting

    def last_seq(self) -> int:
        with self._state.lock:
            return self._state.seq
