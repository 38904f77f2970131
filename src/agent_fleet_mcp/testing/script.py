"""Script steps: what the scripted server answers, one step per ``POST /v1/messages``.

A step is one of:

- ``Reply(text)``: one assistant message with a single text block (``stop_reason`` ``end_turn`` by default).
- ``ToolCall(name, input, text=None)``: one assistant message with an optional text block then one
  ``tool_use`` block (``stop_reason`` ``tool_use``).
- ``Turn(blocks=[...])``: one assistant message with several blocks, e.g. two parallel tool calls. A plain list
  of steps inside the script means the same: ``[Reply("Reading both"), ToolCall(...), ToolCall(...)]``.
- ``ApiError(status, type, message)``: an HTTP error with the API's JSON body, or with ``mid_stream=True`` an
  ``event: error`` after some streamed text (streaming requests only; a non-streaming one gets the HTTP error).
- a plain ``str``: shorthand for ``Reply(str)``.
- a callable ``body -> step``: computed from the request body (the parsed JSON) when it is consumed.
- ``When(predicate, step)``: a rule. On each request, pending rules whose predicate matches the body are tried
  first (in script order), before the first ordinary step. ``times=None`` makes the rule persistent (never
  used up, ignored by ``assert_complete``); ``step=None`` answers with the default policy.
  ``When.no_tools()`` sends tool-less requests (a CLI's side requests) to the default policy, unconsumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from agent_fleet_mcp.text import shorten

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "pause_turn", "refusal"]

#: HTTP status -> the API's error ``type`` (used when ``ApiError.type`` is not given).
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """One assistant message holding one text block."""

    text: str = ""
    stop_reason: StopReason = "end_turn"
    usage: Mapping[str, Any] | None = None
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One assistant message: optional text, then one ``tool_use`` block (``id`` generated when ``None``)."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict[str, Any])
    text: str | None = None
    id: str | None = None
    usage: Mapping[str, Any] | None = None
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Turn:
    """One assistant message of several blocks (``str``/``Reply`` -> text, ``ToolCall`` -> [text] + tool_use).

    ``stop_reason`` defaults to ``tool_use`` when any block is a tool call, else ``end_turn``.
    """

    blocks: Sequence[Reply | ToolCall | str]
    stop_reason: StopReason | None = None
    usage: Mapping[str, Any] | None = None
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ApiError:
    """An API error. ``type`` defaults from ``status`` (429 rate_limit_error, 529 overloaded_error, ...).

    ``retry_after`` (seconds) is sent as the ``retry-after`` header. ``mid_stream=True`` on a streaming request
    sends ``message_start`` and ``partial_text`` first, then ``event: error`` (HTTP status 200, as the real API).
    """

    status: int = 429
    type: str | None = None
    message: str = ""
    retry_after: float | None = None
    mid_stream: bool = False
    partial_text: str = "Working on it"
    latency_s: float = 0.0

    @property
    def error_type(self) -> str:
        return self.type or ERROR_TYPES.get(self.status, "api_error")

    @property
    def error_message(self) -> str:
        return self.message or f"scripted {self.error_type}"


Message: TypeAlias = Reply | ToolCall | Turn
Step: TypeAlias = "Message | ApiError | str | Sequence[Reply | ToolCall | str] | Callable[[dict[str, Any]], Step]"


@dataclass(slots=True)
class When:
    """A rule step: answer with ``step`` the requests whose body satisfies ``predicate``.

    ``times`` is how many requests it answers (``None``: unlimited, and not required by ``assert_complete``);
    ``step=None`` answers with the default policy.
    """

    predicate: Callable[[dict[str, Any]], bool]
    step: Step | None = None
    times: int | None = 1

    @classmethod
    def no_tools(cls, step: Step | None = None, *, times: int | None = None) -> When:
        """Requests offering no tools (e.g. a CLI's title/quota side requests) answered without consuming the
        script: by ``step``, or by the default policy."""
        return cls(lambda body: not body.get("tools"), step, times)

    def matches(self, body: dict[str, Any]) -> bool:
        try:
            return bool(self.predicate(body))
        except Exception:  # a buggy predicate must not take the server down
            return False


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request received. ``headers`` keys are lower-case; ``body`` is ``None`` if it was not JSON."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    ts: float = field(default_factory=time.time)


def to_message(step: Any) -> Message | ApiError:
    """Normalize a (non-callable, non-rule) step to ``Reply``/``ToolCall``/``Turn``/``ApiError``."""
    if isinstance(step, Reply | ToolCall | Turn | ApiError):
        return step
    if isinstance(step, str):
        return Reply(step)
    if isinstance(step, list | tuple):
        blocks: list[Reply | ToolCall | str] = []
        for item in cast(Sequence[object], step):
            if not isinstance(item, Reply | ToolCall | str):
                raise TypeError(f"a list step may hold Reply, ToolCall or str, not {type(item).__name__}")
            blocks.append(item)
        return Turn(blocks)
    raise TypeError(f"not a script step: {step!r}")


def resolve(step: Any, body: dict[str, Any]) -> Message | ApiError:
    """Call dynamic steps (repeatedly, if they return callables) and normalize the result."""
    for _ in range(10):
        if callable(step) and not isinstance(step, Reply | ToolCall | Turn | ApiError | When):
            step = step(body)
        else:
            break
    return to_message(step)


def describe(step: Any) -> str:
    """A short human form of a pending step, for ``assert_complete`` messages."""
    return shorten(repr(step), 120, ellipsis="...")
