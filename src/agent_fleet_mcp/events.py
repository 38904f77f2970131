"""Normalized events: the one vocabulary every runner's output is mapped into.

A turn's transcript is JSONL. The anthropic worker writes these events itself; CLI runners' native streams are
parsed into them (runners/<backend>.py). Status, output, cost and budgets read only these, so they work the same
whichever runner an agent uses.

Every event is a JSON object with ``type`` and ``ts`` (unix seconds). Fields by type:

- ``started``     ``runner``, ``model``?, ``pid``?
- ``session``     ``session_id``: the backend's conversation id, stored so the next turn resumes it
- ``text``        ``text``: assistant prose
- ``tool_use``    ``name``, ``summary`` (short human form, e.g. ``grep 'TODO' in src/``), ``id``?,
                  ``reads``? / ``writes``? (paths the call consumes / produces, relative to cwd when possible)
- ``tool_result`` ``ok``, ``size`` (chars), ``id``?
- ``usage``       ``input``, ``output``, ``cache_read``, ``cache_write`` (tokens of ONE model request or of the whole
                  run, see ``scope``), ``cost_usd`` (float or null when unknown), ``model``?, ``context_tokens``?
                  (prompt size of the last request, for context-window %), ``scope``: ``"request"`` (add up) or
                  ``"run"`` (totals for this turn, replace what was added so far)
- ``result``      ``text``, ``is_error``, ``reason``? (``max_turns``, ``max_cost``, ``timeout``, ``exit_code`` ...)
- ``error``       ``kind``, ``message``
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

EventType = Literal["started", "session", "text", "tool_use", "tool_result", "usage", "result", "error"]
EVENT_TYPES: frozenset[str] = frozenset(
    ("started", "session", "text", "tool_use", "tool_result", "usage", "result", "error")
)

Event = dict[str, Any]


def make(type_: EventType, /, **fields: Any) -> Event:
    """Build an event with a timestamp; ``None`` fields are dropped to keep transcripts small."""
    ev: Event = {"type": type_, "ts": round(time.time(), 3)}
    ev.update({k: v for k, v in fields.items() if v is not None})
    return ev


def dumps(event: Event) -> str:
    """One JSONL line (with the newline)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


def parse_object(line: str) -> dict[str, Any] | None:
    """One JSONL line as a JSON object, or None for blank lines, log noise and non-objects."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None  # pyright: ignore[reportUnknownVariableType]


def loads(line: str) -> Event | None:
    """Parse one transcript line; anything that is not a normalized event gives ``None``."""
    obj = parse_object(line)
    return obj if obj is not None and obj.get("type") in EVENT_TYPES else None
