"""A misbehaving ACP agent for fault injection (the real agents are driven in test_real_agents.py).

``python fake_agent.py <behaviour> [marker]`` speaks newline-delimited JSON-RPC 2.0 on stdin/stdout like an
ACP agent, then misbehaves as asked (``marker``, passed on to every process it starts, lets a test find them):

* ``ok`` — answers everything; a prompt asks permission to write the path in the prompt's text after
  ``write:`` (if any), writes it when allowed, and ends the turn; ``session/cancel`` ends a turn at once;
* ``malformed`` — answers ``initialize``, then prints a line that is not JSON in reply to ``session/new``;
* ``mute`` — never answers anything;
* ``mute-prompt`` — answers all but ``session/prompt``, and ignores ``session/cancel``;
* ``crash`` — exits with status 7 when prompted;
* ``relaunch`` — starts a child copy of itself that does the work (as Gemini CLI and Qwen Code do), which
  survives the parent's SIGTERM, and a grandchild that sleeps;
* ``stderr-flood`` — writes 4 MiB to stderr before answering ``initialize``;
* ``same-session`` — ``session/new`` always returns the same id;
* ``error-prompt`` — answers ``session/prompt`` with a JSON-RPC error (as an agent whose model quota ran out).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BEHAVIOUR = sys.argv[1] if len(sys.argv) > 1 else "ok"
_out_lock = threading.Lock()
_pending: dict[int, threading.Event] = {}
_answers: dict[int, dict] = {}
_cancelled = threading.Event()
_sessions = 0


def send(message: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def request(method: str, params: dict) -> dict:
    ident = 1000 + len(_pending)
    event = threading.Event()
    _pending[ident] = event
    send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
    event.wait()
    return _answers.pop(ident)


def update(session_id: str, body: dict) -> None:
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": body}})


def prompt(ident: int, params: dict) -> None:
    session_id = params["sessionId"]
    text = " ".join(block.get("text", "") for block in params["prompt"])
    if BEHAVIOUR == "crash":
        os._exit(7)
    if BEHAVIOUR == "mute-prompt":
        return
    if BEHAVIOUR == "error-prompt":
        error = {"code": -32603, "message": "Internal error", "data": {"details": "Quota exceeded for model"}}
        send({"jsonrpc": "2.0", "id": ident, "error": error})
        return
    update(session_id, {"sessionUpdate": "plan", "entries": [
        {"content": "write the file", "priority": "high", "status": "in_progress"}]})  # fmt: skip
    if "write:" in text:
        target = text.split("write:", 1)[1].split()[0]
        call = {"toolCallId": "t1", "title": f"Write {target}", "kind": "edit", "status": "pending",
                "locations": [{"path": target}], "rawInput": {"file_path": target}}  # fmt: skip
        update(session_id, {"sessionUpdate": "tool_call", **call})
        options = [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ]
        answer = request(
            "session/request_permission", {"sessionId": session_id, "toolCall": call, "options": options}
        )
        outcome = answer.get("result", {}).get("outcome", {})
        if outcome.get("outcome") == "selected" and outcome.get("optionId") == "yes":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text("written by the fake agent\n")
            diff = {"type": "diff", "path": target, "newText": "written by the fake agent\n"}
            done = {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed"}
            update(session_id, {**done, "content": [diff]})
        else:
            update(session_id, {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "failed"})
    if "slow" in text:
        _cancelled.clear()
        if _cancelled.wait(30):
            send({"jsonrpc": "2.0", "id": ident, "result": {"stopReason": "cancelled"}})
            return
    chunk = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Done."}}
    update(session_id, chunk)
    send({"jsonrpc": "2.0", "id": ident, "result": {"stopReason": "end_turn"}})


def handle(message: dict) -> None:
    global _sessions
    method = message.get("method")
    ident = message.get("id")
    if method is None:
        _answers[ident] = message
        _pending[ident].set()
        return
    if BEHAVIOUR == "mute":
        return
    if method == "initialize":
        if BEHAVIOUR == "stderr-flood":
            for _ in range(4096):
                sys.stderr.write("x" * 1023 + "\n")
            sys.stderr.flush()
        result = {"protocolVersion": 1, "agentCapabilities": {"loadSession": False}, "authMethods": []}
        send({"jsonrpc": "2.0", "id": ident, "result": result})
    elif method == "session/new":
        if BEHAVIOUR == "malformed":
            sys.stdout.write("{this is not json\n")
            sys.stdout.flush()
            return
        _sessions += 1
        session_id = "s-1" if BEHAVIOUR == "same-session" else f"s-{_sessions}"
        send({"jsonrpc": "2.0", "id": ident, "result": {"sessionId": session_id}})
    elif method == "session/prompt":
        threading.Thread(target=prompt, args=(ident, message["params"]), daemon=True).start()
    elif method == "session/cancel":
        if BEHAVIOUR != "mute-prompt":
            _cancelled.set()
    elif ident is not None:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": "Method not found"}})


def main() -> None:
    global BEHAVIOUR
    if BEHAVIOUR == "relaunch":
        # Like Gemini CLI: the parent starts a copy of itself that serves the protocol on the same pipes.
        child = subprocess.Popen([sys.executable, __file__, "relaunched", *sys.argv[2:]])
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the parent goes; the child stays
        child.wait()
        return
    if BEHAVIOUR == "relaunched":
        os.setsid()  # out of the agent's process group: only a walk of the process tree finds it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *sys.argv[2:]])
        BEHAVIOUR = "ok"
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))
    time.sleep(0.1)


if __name__ == "__main__":
    main()
