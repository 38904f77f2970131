"""The Messages API wire format: message JSON, SSE event sequences, error bodies, deterministic token counts.

Pure functions only (no sockets): the server renders steps with these, tests can check them directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from agent_fleet_mcp.jsonish import as_dict, as_list
from agent_fleet_mcp.testing.script import ApiError, Message, Reply, ToolCall, Turn

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
DEFAULT_MODEL = "claude-scripted"


def compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def conversation(body: Mapping[str, Any]) -> list[Any]:
    """The request's ``messages`` without ``role: "system"`` entries (the claude CLI may send them)."""
    return [m for m in as_list(body.get("messages")) if as_dict(m).get("role") != "system"]


def input_tokens(body: Mapping[str, Any]) -> int:
    """≈ a quarter of the characters of messages + system + tools (at least 1)."""
    payload = {"system": body.get("system"), "messages": conversation(body), "tools": body.get("tools")}
    return max(1, len(compact(payload)) // 4)


def output_tokens(blocks: list[dict[str, Any]]) -> int:
    """≈ a quarter of the characters of text plus tool-input JSON (at least 1)."""
    chars = 0
    for block in blocks:
        if block.get("type") == "text":
            chars += len(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            chars += len(compact(block.get("input", {}))) + len(str(block.get("name", "")))
    return max(1, chars // 4)


def content_blocks(message: Message, new_tool_id: Any) -> list[dict[str, Any]]:
    """The content blocks of a step; ``new_tool_id()`` names tool calls that have no ``id``."""
    items: list[Reply | ToolCall | str] = list(message.blocks) if isinstance(message, Turn) else [message]
    blocks: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            blocks.append({"type": "text", "text": item})
        elif isinstance(item, Reply):
            blocks.append({"type": "text", "text": item.text})
        else:
            if item.text:
                blocks.append({"type": "text", "text": item.text})
            tool_id = item.id or str(new_tool_id())
            blocks.append({"type": "tool_use", "id": tool_id, "name": item.name, "input": dict(item.input)})
    return blocks


def stop_reason_of(message: Message, blocks: list[dict[str, Any]]) -> str:
    if isinstance(message, Reply):
        return message.stop_reason
    if isinstance(message, Turn) and message.stop_reason is not None:
        return message.stop_reason
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def build_message(
    message: Message,
    body: Mapping[str, Any],
    *,
    message_id: str,
    new_tool_id: Any,
    usage_defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full (non-streaming) Messages API response for ``message``."""
    blocks = content_blocks(message, new_tool_id)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens(body),
        "output_tokens": output_tokens(blocks),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    usage.update(usage_defaults or {})
    usage.update(message.usage or {})
    model = body.get("model")
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) and model else DEFAULT_MODEL,
        "content": blocks,
        "stop_reason": stop_reason_of(message, blocks),
        "stop_sequence": None,
        "usage": usage,
    }


def split_text(text: str, *, max_chunks: int = 8, min_size: int = 16) -> list[str]:
    """Split ``text`` into a few deltas (always at least one, possibly empty)."""
    if len(text) <= min_size:
        return [text]
    size = max(min_size, -(-len(text) // max_chunks))
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) of a complete streamed message, in the real API's order."""
    start_usage = dict(message["usage"])
    start_usage["output_tokens"] = 1
    start = dict(message, content=[], stop_reason=None, stop_sequence=None, usage=start_usage)
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            head: dict[str, Any] = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
            raw = compact(block["input"])
            for part in split_text(raw, max_chunks=3, min_size=1) if raw != "{}" else [raw]:
                delta = {"type": "input_json_delta", "partial_json": part}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        else:
            head = {"type": "text", "text": ""}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
            for part in split_text(block["text"]):
                delta = {"type": "text_delta", "text": part}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}
    yield "message_stop", {"type": "message_stop"}


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def mid_stream_error_events(
    error: ApiError, body: Mapping[str, Any], *, message_id: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``message_start``, a partial text block, then ``event: error`` (the stream ends there)."""
    partial = build_message(Reply(error.partial_text), body, message_id=message_id, new_tool_id=lambda: "")
    events = stream_events(partial)
    for name, data in events:
        yield name, data
        if name == "content_block_delta":
            break
    yield "error", error_body(error.error_type, error.error_message)


def sse(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {compact(data)}\n\n".encode()
