"""Human-readable, compact renderings of normalized events (get_agent_output transcripts, `agent-fleet logs`)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from agent_fleet_mcp.events import Event
from agent_fleet_mcp.text import clip as _clip

TEXT_LINE_CHARS = 2_000


def render_event(ev: Event, *, with_time: bool = True) -> str:
    kind = ev.get("type")
    stamp = time.strftime("%H:%M:%S ", time.localtime(ev["ts"])) if with_time and ev.get("ts") else ""
    if kind == "started":
        body = f"started {ev.get('runner', '')} {ev.get('model') or ''}".rstrip()
    elif kind == "session":
        body = f"session {ev.get('session_id')}"
    elif kind == "text":
        body = "text: " + _clip(str(ev.get("text", "")), TEXT_LINE_CHARS)
    elif kind == "tool_use":
        body = f"tool  {ev.get('summary') or ev.get('name')}"
    elif kind == "tool_result":
        body = f"  -> {'ok' if ev.get('ok', True) else 'ERROR'} ({ev.get('size', 0)} chars)"
    elif kind == "usage":
        cost = ev.get("cost_usd")
        body = (
            f"usage in={ev.get('input', 0)} out={ev.get('output', 0)} cache_r={ev.get('cache_read', 0)}"
            f" cache_w={ev.get('cache_write', 0)} cost={'?' if cost is None else f'${cost:.4f}'}"
        )
    elif kind == "error":
        body = f"ERROR {ev.get('kind', '')}: {ev.get('message', '')}"
    elif kind == "result":
        tag = "RESULT (error)" if ev.get("is_error") else "RESULT"
        reason = f" [{ev['reason']}]" if ev.get("reason") else ""
        body = f"{tag}{reason}: {ev.get('text', '')}"
    else:
        body = str(ev)
    return stamp + body


def render_events(events: Iterable[Event], *, with_time: bool = True) -> str:
    return "\n".join(render_event(e, with_time=with_time) for e in events)
