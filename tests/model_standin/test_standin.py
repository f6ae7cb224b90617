"""The model stand-in over real loopback HTTP: each API shape through the whole read → write → final play,
the structured routing call, the request log, and the fault switches.

The real CLIs' acceptance of these replies is tested in tests/model_standin/test_real_clis.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aipm.local.model_standin import Faults, ModelStandin
from aipm.local.model_standin.script import (
    Conversation,
    ToolCall,
    ToolSpec,
    next_action,
    render_change,
    render_follow_up,
)
from lambda_src.taskdoc import render_follow_up_brief

TASK = (
    "# Add a greeting\n\n## Objective\n\nWrite a friendly greeting.\n\n## Constraints\n\nNone stated.\n\n"
    "## Acceptance criteria\n\n- [ ] It greets\n- [ ] It is short\n"
)
PATH, CONTENT = render_change(TASK)


@pytest.fixture
def standin() -> Iterator[ModelStandin]:
    with ModelStandin() as server:
        yield server


def post(
    server: ModelStandin, path: str, body: dict[str, Any], key: str | None = "k"
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-api-key"] = key
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type") or "", data


def sse_data(raw: bytes) -> list[Any]:
    frames = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    return [frame if frame == "[DONE]" else json.loads(frame) for frame in frames]


def test_the_change_is_derived_from_task_md_deterministically() -> None:
    assert PATH == "docs/add-a-greeting.md"
    assert "- [x] It greets\n- [x] It is short\n" in CONTENT
    assert render_change(TASK) == (PATH, CONTENT)


def test_anthropic_messages_read_write_final(standin: ModelStandin) -> None:
    tools = [
        {"name": "Read", "input_schema": {"properties": {"file_path": {"type": "string"}}}},
        {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}},
    ]
    system = "You are Claude Code.\n<env>\nWorking directory: /work/job\n</env>"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read TASK.md and implement it"}]
    body = {"model": "claude-x", "stream": True, "system": system, "tools": tools, "messages": messages}
    status, ctype, raw = post(standin, "/v1/messages?beta=true", body)
    assert (status, ctype) == (200, "text/event-stream")
    events = sse_data(raw)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[1]["content_block"]["name"] == "Read"
    assert json.loads(events[2]["delta"]["partial_json"]) == {"file_path": "/work/job/TASK.md"}
    assert events[4]["delta"]["stop_reason"] == "tool_use"
    use = {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/work/job/TASK.md"}}
    numbered = "\n".join(f"{n:6}→{line}" for n, line in enumerate(TASK.splitlines(), 1))
    messages += [
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": numbered}]},
    ]
    events = sse_data(post(standin, "/v1/messages", body)[2])
    write = json.loads(events[2]["delta"]["partial_json"])
    assert write == {"file_path": f"/work/job/{PATH}", "content": CONTENT}
    messages += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Write", "input": write}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "ok"}]},
    ]
    events = sse_data(post(standin, "/v1/messages", body)[2])
    assert events[1]["content_block"]["type"] == "text"
    assert PATH in events[2]["delta"]["text"]
    assert events[4]["delta"]["stop_reason"] == "end_turn"
    status, _, raw = post(standin, "/v1/messages/count_tokens", {"messages": messages})
    assert status == 200 and json.loads(raw)["input_tokens"] > 0
    assert [r.stage for r in standin.requests()] == ["read", "write", "final", "count"]


def test_a_resumed_claude_session_reads_the_new_task_afresh(standin: ModelStandin) -> None:
    """A resumed Claude Code session (claude --resume) replays the earlier turn — the prompt, the read, the
    write, the final answer — then the new prompt: a turn of its own, whose first step is to read TASK.md
    again. Claude Code puts text blocks (its reminders) beside a tool's result in the same user message
    (the shapes below are those 2.1.332 sent here, shortened): that continues the turn."""
    tools = [
        {"name": "Read", "input_schema": {"properties": {"file_path": {"type": "string"}}}},
        {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}},
    ]
    reminder = {"type": "text", "text": "<system-reminder>\nAttribution for git commits\n</system-reminder>"}
    note = reminder
    read = {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/workspace/TASK.md"}}
    write = {"type": "tool_use", "id": "t2", "name": "Write", "input": {"file_path": PATH, "content": "x"}}
    earlier: list[dict[str, Any]] = [
        {"role": "user", "content": [reminder, {"type": "text", "text": "Do the task in TASK.md"}]},
        {"role": "assistant", "content": [read]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": TASK}, note]},
        {"role": "assistant", "content": [write]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "ok"}]},
        {"role": "assistant", "content": [{"type": "text", "text": f"I wrote {PATH} as TASK.md asks."}]},
    ]
    body = {"model": "claude-x", "stream": True, "tools": tools}
    again = [*earlier, {"role": "user", "content": [reminder, {"type": "text", "text": "Do it again"}]}]
    events = sse_data(post(standin, "/v1/messages", body | {"messages": again})[2])
    assert events[1]["content_block"]["name"] == "Read"
    assert json.loads(events[2]["delta"]["partial_json"]) == {"file_path": "TASK.md"}
    # Within the new turn the reply goes on from its own read (the text beside the result changes nothing).
    use = dict(read, id="t3")
    turn = [
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t3", "content": TASK}, note]},
    ]
    events = sse_data(post(standin, "/v1/messages", body | {"messages": [*again, *turn]})[2])
    assert json.loads(events[2]["delta"]["partial_json"]) == {"file_path": PATH, "content": CONTENT}
    assert [r.stage for r in standin.requests()] == ["read", "write"]


def test_chat_completions_stream_tool_calls_and_done(standin: ModelStandin) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "read_file", "parameters": {"properties": {"absolute_path": {}}}},
        },
        {
            "type": "function",
            "function": {"name": "write_file", "parameters": {"properties": {"file_path": {}}}},
        },
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "I'm currently working in the directory: /w/s"},
        {"role": "user", "content": "go"},
    ]
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "tools": tools}
    chunks = sse_data(post(standin, "/v1/chat/completions", body | {"messages": messages})[2])
    assert chunks[-1] == "[DONE]"
    call = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert call["function"]["name"] == "read_file" and call["id"]
    assert json.loads(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]) == {
        "absolute_path": "/w/s/TASK.md"
    }
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[3]["usage"]["total_tokens"] > 0 and chunks[3]["choices"] == []
    messages += [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "function": {"name": "read_file", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": TASK},
    ]
    chunks = sse_data(post(standin, "/v1/chat/completions", body | {"messages": messages})[2])
    arguments = json.loads(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"file_path": f"/w/s/{PATH}", "content": CONTENT}


def test_responses_shell_only_tool_writes_with_a_quoted_here_document(standin: ModelStandin) -> None:
    shell = {
        "type": "function",
        "name": "shell",
        "parameters": {"properties": {"command": {"type": "array"}}},
    }
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<cwd>/w</cwd> go"}]}
    ]
    body = {"model": "gpt", "stream": True, "tools": [shell]}
    events = sse_data(post(standin, "/v1/responses", body | {"input": items})[2])
    assert [e["type"] for e in events] == [
        "response.created", "response.output_item.added", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    item = events[2]["item"]
    assert item["type"] == "function_call" and item["call_id"]
    assert json.loads(item["arguments"]) == {"command": ["bash", "-lc", "cat TASK.md"]}
    output = json.dumps({"output": TASK, "metadata": {"exit_code": 0}})
    items += [item, {"type": "function_call_output", "call_id": item["call_id"], "output": output}]
    events = sse_data(post(standin, "/v1/responses", body | {"input": items})[2])
    script = json.loads(events[2]["item"]["arguments"])["command"][2]
    assert script.startswith(f"mkdir -p docs && cat > {PATH} <<'AIPM_STANDIN_EOF'\n")
    assert CONTENT in script
    assert events[3]["response"]["usage"]["total_tokens"] > 0


GEMINI_READ = {"name": "read_file", "parametersJsonSchema": {"properties": {"file_path": {}}}}


def gemini_turn(standin: ModelStandin, contents: list[dict[str, Any]]) -> dict[str, Any]:
    """The one streamed candidate Gemini's API gives for `contents`, with a read_file tool offered."""
    body = {"contents": contents, "tools": [{"functionDeclarations": [GEMINI_READ]}]}
    raw = post(standin, "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", body)[2]
    (chunk,) = sse_data(raw)
    candidate: dict[str, Any] = chunk["candidates"][0]
    return candidate


def test_gemini_function_call_and_the_routing_call(standin: ModelStandin) -> None:
    contents = [{"role": "user", "parts": [{"text": "go"}]}]
    candidate = gemini_turn(standin, contents)
    assert candidate["content"]["parts"][0]["functionCall"] == {
        "name": "read_file",
        "args": {"file_path": "TASK.md"},
    }
    assert candidate["finishReason"] == "STOP"
    schema = {
        "type": "OBJECT",
        "properties": {"complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}},
    }
    routing = {"contents": contents, "generationConfig": {"responseJsonSchema": schema}}
    status, ctype, raw = post(standin, "/v1beta/models/gemini-lite:generateContent", routing)
    assert (status, ctype) == (200, "application/json")
    answer = json.loads(json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"])
    assert answer["complexity_score"] >= 1 and isinstance(answer["complexity_reasoning"], str)


def test_a_resumed_gemini_session_reads_the_new_task_afresh(standin: ModelStandin) -> None:
    """A resumed session (ACP session/load) replays its earlier turn: read, write, final answer. The new
    user prompt starts a turn of its own, whose first step is to read TASK.md again."""
    read = {"name": "read_file", "args": {"file_path": "TASK.md"}}
    result = {"name": "read_file", "response": {"output": TASK}}
    earlier = [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": read}]},
        {"role": "user", "parts": [{"functionResponse": result}]},
        {"role": "model", "parts": [{"text": f"I wrote {PATH} as TASK.md asks."}]},
    ]
    candidate = gemini_turn(standin, [*earlier, {"role": "user", "parts": [{"text": "go on"}]}])
    assert candidate["content"]["parts"][0]["functionCall"] == read


def test_no_tools_gives_aider_a_whole_file_reply(standin: ModelStandin) -> None:
    messages = [
        {"role": "system", "content": "whole format"},
        {"role": "user", "content": f"TASK.md\n```\n{TASK}```"},
    ]
    raw = post(standin, "/v1/chat/completions", {"model": "m", "messages": messages})[2]
    text = json.loads(raw)["choices"][0]["message"]["content"]
    assert text == f"{PATH}\n```\n{CONTENT}```\n"


def test_a_request_without_an_api_key_is_refused_as_the_service_would(standin: ModelStandin) -> None:
    status, _, raw = post(standin, "/v1/messages", {"messages": []}, key=None)
    assert status == 401 and json.loads(raw)["type"] == "error"
    status, _, raw = post(standin, "/v1/chat/completions", {"messages": "x"})
    assert status == 400 and "messages" in json.loads(raw)["detail"]


def test_fault_switches_error_quota_slow_and_remaining(standin: ModelStandin) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    standin.set_faults(Faults(quota=True, remaining=1))
    status, _, raw = post(standin, "/v1/chat/completions", body)
    assert status == 429 and json.loads(raw)["error"]["code"] == "insufficient_quota"
    assert post(standin, "/v1/chat/completions", body)[0] == 200  # the switch was used up
    standin.set_faults(Faults(error_status=503))
    status, _, raw = post(standin, "/v1beta/models/g:generateContent", {"contents": []})
    assert status == 503 and json.loads(raw)["error"]["status"] == "INTERNAL"
    standin.set_faults(Faults(delay_s=0.5))
    started = time.monotonic()
    assert post(standin, "/v1/messages", {"messages": []})[0] == 200
    assert time.monotonic() - started >= 0.5
    assert standin.requests()[-1].delay_ms >= 500


def test_task_directives_apply_from_the_turn_that_read_the_task(standin: ModelStandin) -> None:
    task = TASK.replace("greeting.", "greeting. <!-- model: quota -->")
    first = {"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": [{"name": "Read"}]}
    assert post(standin, "/v1/messages", first)[0] == 200
    later = {
        "model": "m",
        "tools": [{"name": "Read"}],
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": task}]},
        ],
    }
    status, _, raw = post(standin, "/v1/messages", later)
    assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_error"


def test_hang_holds_the_reply_until_the_client_goes_away(standin: ModelStandin) -> None:
    standin.set_faults(Faults(hang=True))
    sock = socket.create_connection(("127.0.0.1", standin.port), timeout=5)
    body = json.dumps({"messages": []}).encode()
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        sock.recv(1)  # nothing comes back
    sock.close()
    deadline = time.monotonic() + 5
    while not any(r.stage == "hang" for r in standin.requests()):
        assert time.monotonic() < deadline, "the held request never noticed the client leaving"
        time.sleep(0.05)


def test_close_ends_held_requests_at_once() -> None:
    standin = ModelStandin().start()
    standin.set_faults(Faults(hang=True))
    results: list[int] = []

    def call() -> None:
        try:
            results.append(post(standin, "/v1/messages", {"messages": []})[0])
        except (OSError, http.client.HTTPException):
            results.append(-1)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    standin.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and results == [-1]
    assert time.monotonic() - started < 3


def test_a_follow_up_brief_naming_a_file_reads_it_then_appends_to_it() -> None:
    """A review comment's file in the brief (ec2_agent.followup): read after TASK.md, written back with one
    line appended, then the final message; a brief naming no file or an unsafe path gets the usual change."""
    brief = render_follow_up_brief(
        TASK,
        job_id="j",
        author="rita",
        comment="@aipm tidy",
        where="a review comment",
        path="src/app.py",
        line=3,
    )
    tools = (ToolSpec("read_file", {"properties": {"file_path": {}}}),
             ToolSpec("write_file", {"properties": {"file_path": {}, "content": {}}}))  # fmt: skip
    read_task = ToolCall("read_file", {"file_path": "TASK.md"})

    def step(calls: tuple[ToolCall, ...], results: tuple[str, ...]) -> Any:
        return next_action(Conversation("", ("implement TASK.md",), calls, results, tools))

    reread = step((read_task,), (brief,))
    assert (reread.stage, reread.call) == ("read", ToolCall("read_file", {"file_path": "src/app.py"}))
    write = step((read_task, reread.call), (brief, json.dumps({"output": "x = 1\n"})))
    assert write.stage == "write" and write.call is not None
    assert write.call.arguments == {
        "file_path": "src/app.py",
        "content": "x = 1\n\nFollow-up (line 3): written by a real coding-agent CLI driven by the AIPM model "
        "stand-in.\n",
    }
    final = step((read_task, reread.call, write.call), (brief, "x = 1\n", "ok"))
    assert final.stage == "final" and "src/app.py" in final.text
    no_file = render_follow_up_brief(TASK, job_id="j", author="rita", comment="@aipm go", where="a comment")
    assert step((read_task,), (no_file,)).call == ToolCall(
        "write_file", {"file_path": "docs/follow-up-request.md", **{"content": render_change(no_file)[1]}}
    )
    assert render_follow_up(brief.replace("src/app.py", "../../etc/passwd"), "") is None
