"""The normalized event vocabulary (events.py): what ``loads`` accepts, what ``make`` writes, and the check
TranscriptReader applies to a parser's output."""

from __future__ import annotations

import json
from pathlib import Path

from agent_fleet_mcp.events import Event, dumps, is_event, loads, make
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_stats import TurnStats


def test_loads_takes_events_and_refuses_the_rest() -> None:
    ok = {"type": "tool_result", "ts": 1.5, "ok": True, "size": 3}
    assert loads(json.dumps(ok)) == ok
    for bad in (
        {"type": "thinking", "ts": 1.0, "text": "hm"},  # unknown tag
        {"ts": 1.0, "text": "no tag"},
        {"type": "text", "ts": 1.0},  # no text
        {"type": "text", "text": "no time"},
        {"type": "tool_result", "ts": 1.0, "ok": "yes", "size": 3},  # wrong type
        {"type": "usage", "ts": 1.0, "input": 1, "output": 1, "cache_read": 0},  # no cache_write
    ):
        assert loads(json.dumps(bad)) is None, bad
    for noise in ("", "   ", "[1, 2]", "Traceback (most recent call last):", "{not json"):
        assert loads(noise) is None


def test_make_drops_empty_fields_but_keeps_an_unknown_cost() -> None:
    ev = make("usage", input=1, output=2, cache_read=0, cache_write=0, cost_usd=None, model=None, scope="request")
    assert "model" not in ev and "cost_usd" in ev and ev.get("cost_usd", 0) is None
    assert loads(dumps(ev)) == ev
    assert "id" not in make("tool_result", ok=True, size=0, id=None)
    assert is_event(make("started", runner="anthropic", model=None, pid=7))


class _Sloppy:
    """A parser that builds one event without a required field, and passes a non-event through."""

    def feed(self, line: str) -> list[Event]:
        missing: Event = make("text", text=line)
        del missing["text"]  # type: ignore[misc]
        return [missing, make("text", text=line.upper()), {"type": "raw", "line": line}]  # type: ignore[list-item]

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return []


def test_transcript_reader_drops_malformed_events(tmp_path: Path) -> None:
    out = tmp_path / "t.out"
    out.write_text("hi\n")
    got = TranscriptReader(out, _Sloppy()).read_new()
    assert [ev.get("text") for ev in got] == ["HI", None]  # the broken text event is gone
    assert dict(got[1]) == {"type": "raw", "line": "hi"}  # another type is its reader's business (logs --raw)


def test_stats_fold_each_type() -> None:
    stats = TurnStats()
    for ev in (
        make("started", runner="codex", model="m1"),
        make("session", session_id="s1"),
        make("tool_use", name="bash"),  # no summary: the name shows
        make("usage", input=10, output=1, cache_read=0, cache_write=0, cost_usd=0.5, context_tokens=42),
        make("error", kind="api", message="slow down"),
        make("result", text="answer", is_error=True, reason="api_error"),
    ):
        stats.apply(ev)
    assert (stats.model, stats.session_id, stats.tool_calls, stats.context_tokens) == ("m1", "s1", 1, 42)
    assert (stats.input_tokens, stats.cost_usd, stats.error_text()) == (10, 0.5, "api: slow down")
    assert (stats.result_text, stats.is_error, stats.reason, stats.activity) == ("answer", True, "api_error", "failed")
