"""Folding a turn's normalized events into the numbers status shows. Pure: no I/O.

Used by the supervisor while it follows a running turn, and by readers (CLI, get_agent_output) that re-read a
transcript. Totals are absolute, so two servers following the same turn write the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_fleet_mcp.events import Event, UsageEvent
from agent_fleet_mcp.store.models import TurnStatsUpdate

MAX_FILES_KEPT = 200
RESULT_KEEP_CHARS = 256_000


@dataclass
class TurnStats:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    cost_known: bool = True  # becomes False once a usage event has no price (unknown model)
    context_tokens: int | None = None
    model: str | None = None
    tool_calls: int = 0
    activity: str | None = None
    last_event_at: float | None = None
    reads: list[str] = field(default_factory=list[str])
    writes: list[str] = field(default_factory=list[str])
    session_id: str | None = None
    result_text: str | None = None
    is_error: bool | None = None
    reason: str | None = None
    errors: list[str] = field(default_factory=list[str])
    events: int = 0
    # run-scoped usage replaces request-scoped sums; remember the request sums to undo them
    _req: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    _req_cost: float | None = None

    @property
    def has_result(self) -> bool:
        return self.is_error is not None

    def apply(self, ev: Event) -> None:
        self.events += 1
        self.last_event_at = ev["ts"]
        if ev["type"] == "started":
            self.model = ev.get("model") or self.model
            self.activity = "starting"
        elif ev["type"] == "session":
            self.session_id = ev["session_id"] or self.session_id
        elif ev["type"] == "text" or ev["type"] == "tool_result":
            self.activity = "thinking"
        elif ev["type"] == "tool_use":
            self.tool_calls += 1
            self.activity = (ev.get("summary") or ev["name"] or "tool")[:160]
            _add_paths(self.reads, ev.get("reads"))
            _add_paths(self.writes, ev.get("writes"))
        elif ev["type"] == "usage":
            self._apply_usage(ev)
        elif ev["type"] == "error":
            self.errors.append(f"{ev['kind']}: {ev['message']}"[:1000])
        else:  # result
            self.result_text = ev["text"][-RESULT_KEEP_CHARS:]
            self.is_error = ev["is_error"]
            self.reason = ev.get("reason")
            self.activity = "failed" if self.is_error else "done"

    def _apply_usage(self, ev: UsageEvent) -> None:
        vals = [ev["input"], ev["output"], ev["cache_read"], ev["cache_write"]]
        cost = ev.get("cost_usd")
        if ev.get("scope") == "run":
            base = [0, 0, 0, 0]
            self._req = [0, 0, 0, 0]
            self._req_cost = None
            self.cost_known = True
            total_cost: float | None = cost
        else:
            base = self._req
            self._req = [a + b for a, b in zip(base, vals, strict=True)]
            vals = self._req
            if cost is None:
                self.cost_known = False
            total_cost = None if not self.cost_known else (self._req_cost or 0.0) + float(cost or 0.0)
            self._req_cost = total_cost
        self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens = vals
        self.cost_usd = None if total_cost is None else round(float(total_cost), 6)
        if (context := ev.get("context_tokens")) is not None:
            self.context_tokens = context
        self.model = ev.get("model") or self.model

    def error_text(self) -> str | None:
        return self.errors[-1] if self.errors else None

    def db_fields(self) -> TurnStatsUpdate:
        """What the store keeps of this turn's stats (``Store.update_turn_stats``)."""
        return TurnStatsUpdate(
            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens, cache_write_tokens=self.cache_write_tokens,
            cost_usd=self.cost_usd, context_tokens=self.context_tokens, tool_calls=self.tool_calls,
            activity=self.activity, last_event_at=self.last_event_at, reads=list(self.reads),
            writes=list(self.writes), model=self.model,
        )  # fmt: skip


def _add_paths(into: list[str], paths: list[str] | None) -> None:
    for p in paths or ():
        s = str(p)  # a transcript line's list may hold anything
        if s not in into and len(into) < MAX_FILES_KEPT:
            into.append(s)
