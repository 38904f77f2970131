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

Each type is a TypedDict below and ``Event`` is their union, tagged by ``type``: narrow with ``ev["type"] == ...``.
At run time events stay plain dicts (the JSON lines on disk are unchanged). ``make`` builds one (typed per type);
``loads`` parses one and checks its tag and its required fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict, TypeGuard, cast, overload

EventType = Literal["started", "session", "text", "tool_use", "tool_result", "usage", "result", "error"]
EVENT_TYPES: frozenset[str] = frozenset(
    ("started", "session", "text", "tool_use", "tool_result", "usage", "result", "error")
)
UsageScope = Literal["request", "run"]


class StartedEvent(TypedDict):
    type: Literal["started"]
    ts: float
    runner: str
    model: NotRequired[str]
    pid: NotRequired[int]


class SessionEvent(TypedDict):
    type: Literal["session"]
    ts: float
    session_id: str


class TextEvent(TypedDict):
    type: Literal["text"]
    ts: float
    text: str


class ToolUseEvent(TypedDict):
    type: Literal["tool_use"]
    ts: float
    name: str
    summary: NotRequired[str]
    id: NotRequired[str]
    reads: NotRequired[list[str]]
    writes: NotRequired[list[str]]


class ToolResultEvent(TypedDict):
    type: Literal["tool_result"]
    ts: float
    ok: bool
    size: int
    id: NotRequired[str]


class UsageEvent(TypedDict):
    type: Literal["usage"]
    ts: float
    input: int
    output: int
    cache_read: int
    cache_write: int
    cost_usd: NotRequired[float | None]  # null: the model's price is unknown
    model: NotRequired[str]
    context_tokens: NotRequired[int]
    scope: NotRequired[UsageScope]  # absent: "request"


class ResultEvent(TypedDict):
    type: Literal["result"]
    ts: float
    text: str
    is_error: bool
    reason: NotRequired[str]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    ts: float
    kind: str
    message: str


Event = (
    StartedEvent | SessionEvent | TextEvent | ToolUseEvent | ToolResultEvent | UsageEvent | ResultEvent | ErrorEvent
)

# The fields each type must carry, with their JSON types (bool counts as a number: it is one in Python).
_REQUIRED: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "started": (("runner", str),),
    "session": (("session_id", str),),
    "text": (("text", str),),
    "tool_use": (("name", str),),
    "tool_result": (("ok", bool), ("size", int)),
    "usage": (("input", int), ("output", int), ("cache_read", int), ("cache_write", int)),
    "result": (("text", str), ("is_error", bool)),
    "error": (("kind", str), ("message", str)),
}


# Keyword checks per type. Only ``usage`` returns its own type (callers set its ``cost_usd``); the others return
# ``Event`` so that ``[make("started", ...), make("session", ...)]`` is a ``list[Event]``.
# fmt: off
@overload
def make(type_: Literal["started"], /, *, runner: str, model: str | None = None, pid: int | None = None,
         **extra: Any) -> Event: ...
@overload
def make(type_: Literal["session"], /, *, session_id: str, **extra: Any) -> Event: ...
@overload
def make(type_: Literal["text"], /, *, text: str, **extra: Any) -> Event: ...
@overload
def make(type_: Literal["tool_use"], /, *, name: str, summary: str | None = None, id: str | None = None,
         reads: list[str] | None = None, writes: list[str] | None = None, **extra: Any) -> Event: ...
@overload
def make(type_: Literal["tool_result"], /, *, ok: bool, size: int, id: str | None = None,
         **extra: Any) -> Event: ...
@overload
def make(type_: Literal["usage"], /, *, input: int, output: int, cache_read: int, cache_write: int,
         cost_usd: float | None = None, model: str | None = None, context_tokens: int | None = None,
         scope: UsageScope | None = None, **extra: Any) -> UsageEvent: ...
@overload
def make(type_: Literal["result"], /, *, text: str, is_error: bool, reason: str | None = None,
         **extra: Any) -> Event: ...
@overload
def make(type_: Literal["error"], /, *, kind: str, message: str, **extra: Any) -> Event: ...
@overload
def make(type_: EventType, /, **fields: Any) -> Event: ...
# fmt: on
def make(type_: EventType, /, **fields: Any) -> Event:
    """Build an event with a timestamp; ``None`` fields are dropped to keep transcripts small, except a usage's
    ``cost_usd`` passed as None: an unknown cost stays an explicit null."""
    ev: dict[str, Any] = {"type": type_, "ts": round(time.time(), 3)}
    ev.update({k: v for k, v in fields.items() if v is not None or (k == "cost_usd" and type_ == "usage")})
    return cast(Event, ev)  # the overloads check the fields; TranscriptReader drops an event that lacks one


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


def is_event(obj: Mapping[str, object]) -> TypeGuard[Event]:
    """A normalized event: a known ``type``, a numeric ``ts`` and the fields its type requires."""
    kind = obj.get("type")
    required = _REQUIRED.get(kind) if isinstance(kind, str) else None
    if required is None or not isinstance(obj.get("ts"), int | float):
        return False
    return all(isinstance(obj.get(key), types) for key, types in required)


def loads(line: str) -> Event | None:
    """Parse one transcript line; anything that is not a normalized event gives ``None``."""
    obj = parse_object(line)
    return obj if obj is not None and is_event(obj) else None
