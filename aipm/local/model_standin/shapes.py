"""The four model APIs on the wire: a request body → :class:`Conversation`, an :class:`Action` → the
reply (server-sent events when streamed, one JSON object otherwise), and each API's error bodies.

Sources for the shapes (the public API references, and what the real CLIs accepted here — see
/work/shared/COUNTERPARTS.md):

* Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``): events ``message_start``,
  ``content_block_start`` (``tool_use`` with empty input, or ``text``), ``content_block_delta``
  (``input_json_delta`` / ``text_delta``), ``content_block_stop``, ``message_delta`` (``stop_reason``),
  ``message_stop``; errors ``{"type": "error", "error": {"type", "message"}}``.
* OpenAI Chat Completions (``POST /v1/chat/completions``): ``chat.completion.chunk`` objects, a
  ``tool_calls`` chunk then an arguments chunk, ``finish_reason`` ``tool_calls``/``stop``, a usage chunk
  when ``stream_options.include_usage``, then ``data: [DONE]``.
* OpenAI Responses (``POST /v1/responses``): ``response.created``, ``response.output_item.added`` /
  ``.done`` (a ``function_call`` with ``call_id``, or a ``message``), ``response.completed`` with usage.
* Gemini (``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` and ``:generateContent``,
  ``:countTokens``): one chunk holding a ``functionCall`` (or text) part, ``finishReason`` ``STOP`` and
  ``usageMetadata``; a request with ``generationConfig.responseSchema`` (or ``responseJsonSchema``) is
  structured output (Gemini CLI's routing call).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from aipm.local.model_standin.script import Action, Conversation, ToolCall, ToolSpec

__all__ = ["Api", "conversation", "error_body", "render", "sse_content_type"]

Api = Literal["anthropic", "chat", "responses", "gemini"]
sse_content_type = "text/event-stream"
_ids = itertools.count(1)


def _text_of(content: Any) -> str:
    """Text of a content value: a string, or a list of parts/blocks holding text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                for key in ("text", "content", "output"):
                    value = part.get(key)
                    if isinstance(value, str | list):
                        parts.append(_text_of(value))
                        break
        return "\n".join(parts)
    if isinstance(content, dict):
        return json.dumps(content)
    return ""


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"raw": value}
        return parsed if isinstance(parsed, dict) else {"raw": value}
    return {}


def conversation(api: Api, body: dict[str, Any]) -> Conversation:
    """Normalise a request body of ``api``. ``ValueError`` if it is not that API's shape."""
    if api == "anthropic":
        return _anthropic(body)
    if api == "chat":
        return _chat(body)
    if api == "responses":
        return _responses(body)
    return _gemini(body)


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be a list")
    return value


def _anthropic(body: dict[str, Any]) -> Conversation:
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[str] = []
    for message in _list(body, "messages"):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if message.get("role") == "user" and not any(b.get("type") == "tool_result" for b in blocks):
            # A user's prompt starts a turn: the calls and results of earlier turns (a resumed session
            # replays them: claude --resume) are not this turn's, whose task is read anew. Claude Code puts
            # its reminders beside the tool results in the same user message, so a message holding a tool
            # result continues the turn whatever text it also holds.
            calls.clear()
            results.clear()
        if isinstance(content, str):
            texts.append(content)
            continue
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "tool_use":
                calls.append(ToolCall(str(block.get("name", "")), _args(block.get("input"))))
            elif kind == "tool_result":
                results.append(_text_of(block.get("content")))
    tools = tuple(
        ToolSpec(str(t.get("name", "")), t.get("input_schema") or {})
        for t in _list(body, "tools")
        if isinstance(t, dict) and "name" in t
    )
    return Conversation(_text_of(body.get("system", "")), tuple(texts), tuple(calls), tuple(results), tools)


def _chat(body: dict[str, Any]) -> Conversation:
    system: list[str] = []
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[str] = []
    for message in _list(body, "messages"):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        text = _text_of(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "tool":
            results.append(text)
        else:
            texts.append(text)
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            calls.append(ToolCall(str(function.get("name", "")), _args(function.get("arguments"))))
    tools = tuple(
        ToolSpec(str(t["function"].get("name", "")), t["function"].get("parameters") or {})
        for t in _list(body, "tools")
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    )
    return Conversation("\n".join(system), tuple(texts), tuple(calls), tuple(results), tools)


def _responses(body: dict[str, Any]) -> Conversation:
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[str] = []
    items = body.get("input", [])
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    system = [_text_of(body.get("instructions", ""))]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            target = system if item.get("role") in ("system", "developer") else texts
            target.append(_text_of(item.get("content")))
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(ToolCall(str(item.get("name", "")), _args(item.get("arguments", item.get("input")))))
        elif kind == "local_shell_call":
            calls.append(ToolCall("local_shell", _args(item.get("action"))))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            results.append(_text_of(item.get("output")))
    tools = []
    for tool in _list(body, "tools"):
        if isinstance(tool, dict) and tool.get("type") == "function":
            tools.append(ToolSpec(str(tool.get("name", "")), tool.get("parameters") or {}))
    return Conversation("\n".join(system), tuple(texts), tuple(calls), tuple(results), tuple(tools))


def _gemini(body: dict[str, Any]) -> Conversation:
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[str] = []
    for content in _list(body, "contents"):
        if not isinstance(content, dict):
            continue
        parts = [p for p in content.get("parts", []) if isinstance(p, dict)]
        if content.get("role") == "user" and not any("functionResponse" in p for p in parts):
            # A user's prompt starts a turn: the calls and results of earlier turns (a resumed session
            # replays them: ACP session/load) are not this turn's, whose task is read anew.
            calls.clear()
            results.clear()
        for part in parts:
            if "text" in part and not part.get("thought"):
                texts.append(str(part["text"]))
            elif "functionCall" in part:
                call = part["functionCall"]
                calls.append(ToolCall(str(call.get("name", "")), _args(call.get("args"))))
            elif "functionResponse" in part:
                results.append(_text_of(part["functionResponse"].get("response", {})))
    system_instruction = body.get("systemInstruction") or body.get("system_instruction") or {}
    system = _text_of(system_instruction.get("parts", [])) if isinstance(system_instruction, dict) else ""
    tools = tuple(
        ToolSpec(str(decl.get("name", "")), decl.get("parametersJsonSchema") or decl.get("parameters") or {})
        for group in _list(body, "tools")
        if isinstance(group, dict)
        for decl in group.get("functionDeclarations") or group.get("function_declarations") or []
        if isinstance(decl, dict)
    )
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema is None and config.get("responseMimeType") == "application/json":
        schema = {"type": "object"}
    return Conversation(system, tuple(texts), tuple(calls), tuple(results), tools, schema)


# ------------------------------------------------------------------------------------ replies


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _answer_text(action: Action) -> str:
    return json.dumps(action.json_value) if action.kind == "json" else action.text


def render(
    api: Api, action: Action, *, model: str, stream: bool, include_usage: bool = True
) -> Iterator[bytes]:
    """The reply's bytes: SSE frames when ``stream``, else one JSON document."""
    serial = next(_ids)
    if api == "anthropic":
        return _render_anthropic(action, model, stream, serial)
    if api == "chat":
        return _render_chat(action, model, stream, serial, include_usage)
    if api == "responses":
        return _render_responses(action, model, serial)
    return _render_gemini(action, model, stream)


def _render_anthropic(action: Action, model: str, stream: bool, serial: int) -> Iterator[bytes]:
    usage = {"input_tokens": 100, "output_tokens": 20}
    call = action.call
    if call is not None:
        block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_standin{serial:06d}", "name": call.name}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": _answer_text(action)}
        stop = "end_turn"
    message: dict[str, Any] = {
        "id": f"msg_standin{serial:06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 1},
    }
    if not stream:
        full = dict(block, input=call.arguments) if call is not None else block
        yield json.dumps(dict(message, content=[full], stop_reason=stop, usage=usage)).encode()
        return
    yield _sse("message_start", {"type": "message_start", "message": message})
    if call is not None:
        start = dict(block, input={})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(call.arguments)}
    else:
        start = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    yield _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start})
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
    )
    yield _sse("message_stop", {"type": "message_stop"})


def _render_chat(
    action: Action, model: str, stream: bool, serial: int, include_usage: bool
) -> Iterator[bytes]:
    ident = f"chatcmpl-standin{serial:06d}"
    created = int(time.time())
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    call = action.call
    call_id = f"call_standin{serial:06d}"
    arguments = json.dumps(call.arguments) if call is not None else ""
    finish = "tool_calls" if call is not None else "stop"
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": None if call else _answer_text(action)}
        if call is not None:
            function = {"name": call.name, "arguments": arguments}
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "finish_reason": finish}
        body = {"id": ident, "object": "chat.completion", "created": created, "model": model}
        yield json.dumps(dict(body, choices=[choice], usage=usage)).encode()
        return

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        return _sse(None, dict(body, choices=[choice]))

    if call is not None:
        head = {
            "index": 0,
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None)
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}, None)
    else:
        yield chunk({"role": "assistant", "content": _answer_text(action)}, None)
    yield chunk({}, finish)
    if include_usage:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        yield _sse(None, dict(body, choices=[], usage=usage))
    yield _sse(None, "[DONE]")


def _render_responses(action: Action, model: str, serial: int) -> Iterator[bytes]:
    ident = f"resp_standin{serial:06d}"
    call = action.call
    if call is not None:
        item: dict[str, Any] = {
            "type": "function_call",
            "id": f"fc_standin{serial:06d}",
            "call_id": f"call_standin{serial:06d}",
            "name": call.name,
            "arguments": json.dumps(call.arguments),
            "status": "completed",
        }
    else:
        item = {
            "type": "message",
            "id": f"msg_standin{serial:06d}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": _answer_text(action), "annotations": []}],
        }
    base = {"id": ident, "object": "response", "created_at": int(time.time()), "model": model}
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 120,
    }
    yield _sse("response.created", {"type": "response.created", "response": dict(base, status="in_progress")})
    added = dict(item, status="in_progress")
    yield _sse(
        "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": added}
    )
    if call is None:
        delta = {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0,
                 "content_index": 0, "delta": _answer_text(action)}  # fmt: skip
        yield _sse("response.output_text.delta", delta)
    yield _sse(
        "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}
    )
    done = dict(base, status="completed", output=[item], usage=usage)
    yield _sse("response.completed", {"type": "response.completed", "response": done})


def _render_gemini(action: Action, model: str, stream: bool) -> Iterator[bytes]:
    call = action.call
    part: dict[str, Any] = (
        {"functionCall": {"name": call.name, "args": call.arguments}}
        if call
        else {"text": _answer_text(action)}
    )
    body = {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        "modelVersion": model,
    }
    yield _sse(None, body) if stream else json.dumps(body).encode()


def error_body(api: Api, status: int, *, quota: bool) -> dict[str, Any]:
    """The API's error document for ``status`` (429 with the API's quota wording when ``quota``)."""
    if quota:
        message = "Request quota exceeded: you have exceeded your current quota (AIPM model stand-in)."
    else:
        message = f"The model service had trouble responding (AIPM model stand-in, HTTP {status})."
    if api == "anthropic":
        kind = "rate_limit_error" if quota else ("overloaded_error" if status == 529 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if api == "gemini" and quota:
        # Google's answer when a daily quota is used up (a QuotaFailure whose quota id names a per-day limit):
        # Gemini CLI does not retry it (classifyGoogleError: TerminalQuotaError).
        violation = {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        }
        failure = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}
        return {
            "error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [failure]}
        }
    if api == "gemini":
        return {"error": {"code": status, "message": message, "status": "INTERNAL"}}
    code = "insufficient_quota" if quota else "server_error"
    return {"error": {"message": message, "type": code, "code": code, "param": None}}
