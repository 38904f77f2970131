"""Human-readable, compact renderings of normalized events (get_agent_output transcripts, `agent-fleet logs`)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from agent_fleet_mcp.events import Event
from agent_fleet_mcp.text import clip as _clip

TEXT_LINE_CHARS = 2_000


def render_event(ev: Event, *, with_time: bool = True) -> str:
    ts = ev.get("ts")  # a reader may have dropped it (observe.turn_log: not when it happened)
    stamp = time.strftime("%H:%M:%S ", time.localtime(ts)) if with_time and ts else ""
    return stamp + _body(ev)


def _body(ev: Event) -> str:
    if ev["type"] == "started":
        return f"started {ev['runner']} {ev.get('model') or ''}".rstrip()
    if ev["type"] == "session":
        return f"session {ev['session_id']}"
    if ev["type"] == "text":
        return "text: " + _clip(ev["text"], TEXT_LINE_CHARS)
    if ev["type"] == "tool_use":
        return f"tool  {ev.get('summary') or ev['name']}"
    if ev["type"] == "tool_result":
        return f"  -> {'ok' if ev['ok'] else 'ERROR'} ({ev['size']} chars)"
    if ev["type"] == "usage":
        cost = ev.get("cost_usd")
        return (
            f"usage in={ev['input']} out={ev['output']} cache_r={ev['cache_read']}"
            f" cache_w={ev['cache_write']} cost={'?' if cost is None else f'${cost:.4f}'}"
        )
    if ev["type"] == "error":
        return f"ERROR {ev['kind']}: {ev['message']}"
    tag = "RESULT (error)" if ev["is_error"] else "RESULT"
    reason = f" [{why}]" if (why := ev.get("reason")) else ""
    return f"{tag}{reason}: {ev['text']}"


def render_events(events: Iterable[Event], *, with_time: bool = True) -> str:
    return "\n".join(render_event(e, with_time=with_time) for e in events)
