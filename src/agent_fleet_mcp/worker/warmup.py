"""The fork server's warm-up of the response path: one streamed response, parsed by the SDK exactly as a turn parses
one, with no socket (an in-memory transport).

The SDK builds its pydantic validators lazily, on the first response it parses (the streamed event union,
``Message``, the content block types, the request's typed parameters). That took ~0.2 s of CPU in every worker, at
the moment its answer arrived: 20 answers landing together on 2 cores finished up to 1 s late. Done once in the fork
server, before it forks, every worker inherits the built validators (measured: a turn's CPU after fork 0.24 s ->
0.03 s).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from agent_fleet_mcp.worker import loop
from agent_fleet_mcp.worker.paths import Sandbox
from agent_fleet_mcp.worker.tools import Toolbox, select_tools

MODEL = "claude-warm-up"

# A response with every block type a turn handles (thinking, text, tool_use with streamed JSON input), in the
# Messages API's SSE order.
_USAGE: dict[str, Any] = {
    "input_tokens": 1,
    "output_tokens": 1,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "service_tier": "standard",
}
_MESSAGE: dict[str, Any] = {
    "id": "msg_warm_up",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": _USAGE,
}
EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": _MESSAGE},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "warm"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "d2FybQ=="}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "warm"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_warm_up", "name": "read_file", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"path": "a"}'}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    },
    {"type": "message_stop"},
]


def sse_body() -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in EVENTS)


# The parametrized generic models the warm-up made, held here. pydantic caches ``Model[T]`` in a weak-value dict,
# and the SDK's stream accumulator evaluates ``ParsedMessage[ResponseFormatT]`` at every event: the fork server's
# gc.collect() before it forks collected that class, and every worker built it again (~1.3 ms of CPU, and the
# pages a new class writes).
KEPT: list[Any] = []


def warm_stream() -> Any:
    """Stream ``EVENTS`` through the SDK as ``Turn._request`` does, with every built-in tool's definition in the
    request, and keep the generic models it parametrized (``KEPT``); returns the final message (the tests check that
    it parsed whole)."""
    enabled = gc.isenabled()
    gc.disable()  # what the stream made is still in pydantic's weak cache when we look
    try:
        message = _stream()
        KEPT.extend(_generic_models())
    finally:
        if enabled:
            gc.enable()
    return message


def _generic_models() -> list[Any]:
    try:
        from pydantic._internal import _generics

        return list(_generics._GENERIC_TYPES_CACHE.values())  # pyright: ignore[reportPrivateUsage]
    except (ImportError, AttributeError):  # another pydantic: an optimisation lost, nothing else
        return []


def _stream() -> Any:
    import anthropic
    import httpx2

    body = sse_body()

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    client = anthropic.Anthropic(api_key="warm-up", base_url="http://127.0.0.1:9", http_client=http, max_retries=0)
    here = Path.cwd()
    names, _ = select_tools("readwrite", None)
    tools = Toolbox(Sandbox(here), names).definitions()
    opts = loop.Options(agent_dir=here, cwd=here, model=MODEL, permission="readwrite")
    messages: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "warm up"}]}]
    try:
        with client.messages.stream(**loop.request_params(opts, messages, "warm up", tools)) as stream:
            for _ in stream:
                pass
            message = stream.get_final_message()
        loop.assistant_message(list(message.content))
        loop.usage_fields(message.usage, MODEL)
    finally:
        client.close()
    return message
