"""claude-code stream parsing on recorded `claude -p --output-format stream-json --verbose` output.

The fixtures under tests/fixtures/claude were recorded from the pinned CLI (2.1.328) against a loopback fake
Messages API (paths normalized to /home/dev/proj).
"""

from __future__ import annotations

import json

import pytest

from agent_fleet_mcp.runners.claude_code import COST_LEDGER, ClaudeCodeRunner

from .helpers import FIXTURES, MakeRequest, of_type, replay, replay_fixture

CLAUDE = FIXTURES / "claude"
SESSION = "12e2e7cf-7ca0-495e-bb0e-98ab57ea9918"


def parse(make_request: MakeRequest, name: str, *, exit_code: int | None = 0, stderr: str = "", **req: object):
    path = CLAUDE / f"{name}.jsonl"
    return replay_fixture(make_request, "claude-code", path, exit_code=exit_code, stderr=stderr, **req)


def test_tool_turn_maps_every_block(make_request: MakeRequest) -> None:
    events = parse(make_request, "tool_turn")
    assert [e["type"] for e in events] == [
        "started", "session", "text", "tool_use", "tool_result", "text", "tool_use", "tool_result",
        "tool_use", "tool_result", "tool_use", "tool_result", "text", "usage", "result",
    ]  # fmt: skip
    assert events[0] == {"type": "started", "runner": "claude-code", "model": "claude-opus-5-5"}
    assert events[1] == {"type": "session", "session_id": "03bfa9b2-06e7-4925-adf2-38c1480cb12b"}
    tools = of_type(events, "tool_use")
    assert [t["summary"] for t in tools] == [
        "Read src/calc.py",
        "Grep 'TODO' in src",
        "Edit src/calc.py",
        "Bash: python -c 'import src.calc'",
    ]
    assert tools[0]["reads"] == ["src/calc.py"] and "writes" not in tools[0]
    assert tools[2]["writes"] == ["src/calc.py"]
    assert all(t["id"].startswith("toolu_") for t in tools)
    results = of_type(events, "tool_result")
    assert [r["id"] for r in results] == [t["id"] for t in tools]
    assert all(r["ok"] for r in results)
    assert results[0]["size"] == len("1\tdef add(a, b):\n2\t    return a + b\n3\t")
    assert events[-1] == {
        "type": "result",
        "text": "Done: calc.py now returns b + a; one TODO remains in src/todo.py.",
        "is_error": False,
        "terminal_reason": "completed",
        "num_turns": 5,
    }


def test_usage_comes_once_from_the_result_never_summed_from_assistant_lines(make_request: MakeRequest) -> None:
    lines = (CLAUDE / "tool_turn.jsonl").read_text().splitlines()
    assistant = [json.loads(x) for x in lines if json.loads(x)["type"] == "assistant"]
    # Two messages were split over two lines each (text block + tool_use block), each repeating its snapshot.
    ids = [a["message"]["id"] for a in assistant]
    assert len(ids) == 7 and len(set(ids)) == 5
    naive = sum(a["message"]["usage"]["input_tokens"] for a in assistant)
    assert naive == 3470  # what summing per line would claim

    (usage,) = of_type(parse(make_request, "tool_turn"), "usage")
    assert usage == {
        "type": "usage",
        "scope": "run",
        "input": 1970,
        "output": 225,
        "cache_read": 23300,
        "cache_write": 500,
        "cost_usd": 0.01954,
        "model": "claude-opus-5-5",
        "context_tokens": 120 + 5400,  # the last request's prompt: input + cache read + cache write
    }


def test_resumed_session_reports_the_cost_delta(make_request: MakeRequest) -> None:
    first = parse(make_request, "resume_turn1", turn=1)
    second = parse(make_request, "resume_turn2", turn=2, session_id=SESSION)
    (u1,) = of_type(first, "usage")
    (u2,) = of_type(second, "usage")
    assert u1["cost_usd"] == pytest.approx(0.0016)
    assert u2["cost_usd"] == pytest.approx(0.0008)  # the CLI reported the cumulative 0.0024
    assert (u2["input"], u2["output"]) == (100, 20)  # tokens are this run's already
    assert of_type(second, "session") == [{"type": "session", "session_id": SESSION}]
    assert of_type(second, "result")[0]["text"] == "second answer"


def test_cost_ledger_is_idempotent_when_a_turn_is_parsed_again(make_request: MakeRequest) -> None:
    parse(make_request, "resume_turn1", turn=1)
    parse(make_request, "resume_turn2", turn=2, session_id=SESSION)
    again_2 = of_type(parse(make_request, "resume_turn2", turn=2, session_id=SESSION), "usage")[0]
    again_1 = of_type(parse(make_request, "resume_turn1", turn=1), "usage")[0]
    assert again_2["cost_usd"] == pytest.approx(0.0008)
    assert again_1["cost_usd"] == pytest.approx(0.0016)
    ledger = json.loads((make_request("claude-code").agent_dir / COST_LEDGER).read_text())
    assert ledger[SESSION] == {"1": {"cost_usd": 0.0016}, "2": {"cost_usd": pytest.approx(0.0024)}}


def test_resume_without_ledger_history_reports_the_whole_total(make_request: MakeRequest) -> None:
    (usage,) = of_type(parse(make_request, "resume_turn2", turn=2, session_id=SESSION), "usage")
    assert usage["cost_usd"] == pytest.approx(0.0024)


def test_max_turns(make_request: MakeRequest) -> None:
    events = parse(make_request, "max_turns", exit_code=1)
    assert [e["type"] for e in events[-3:]] == ["usage", "error", "result"]
    assert events[-2] == {"type": "error", "kind": "max_turns", "message": "Reached maximum number of turns (2)"}
    assert events[-1] == {
        "type": "result",
        "text": "",
        "is_error": True,
        "reason": "max_turns",
        "terminal_reason": "max_turns",
        "num_turns": 3,
    }


def test_max_budget(make_request: MakeRequest) -> None:
    events = parse(make_request, "max_budget", exit_code=1)
    assert events[-2]["kind"] == "max_cost"
    assert events[-1]["reason"] == "max_cost" and events[-1]["is_error"] is True


def test_api_error_result(make_request: MakeRequest) -> None:
    events = parse(make_request, "api_error", exit_code=1)
    assert not of_type(events, "text")  # the CLI's synthetic "API Error" assistant message is not model prose
    (error,) = of_type(events, "error")
    assert error == {
        "type": "error",
        "kind": "api_error",
        "message": "Failed to authenticate. API Error: 403 forbidden",
        "status": 403,
    }
    result = events[-1]
    assert result["is_error"] is True and result["reason"] == "api_error"
    assert result["terminal_reason"] == "api_error"
    assert of_type(events, "usage")[0]["cost_usd"] == 0.0


def test_permission_denials_are_summarized(make_request: MakeRequest) -> None:
    events = parse(make_request, "permission_denied")
    (tool_result,) = of_type(events, "tool_result")
    assert tool_result["ok"] is False
    result = events[-1]
    assert result["is_error"] is False
    assert result["permission_denials"] == ["Write new.txt"]


def test_killed_mid_turn_closes_from_the_exit_code(make_request: MakeRequest) -> None:
    lines = (CLAUDE / "tool_turn.jsonl").read_text().splitlines()[:4]  # init, text, Read, its result
    parser = ClaudeCodeRunner().new_parser(make_request("claude-code"))
    events = replay(parser, lines, exit_code=-15, stderr="")
    assert not of_type(events, "usage")
    assert events[-2] == {"type": "error", "kind": "exit", "message": "the process was killed by signal 15"}
    assert events[-1] == {
        "type": "result",
        "text": "Let me look at the code first.",
        "is_error": True,
        "reason": "exit_code",
    }


def test_stream_without_result_but_exit_0_succeeds(make_request: MakeRequest) -> None:
    lines = (CLAUDE / "resume_turn1.jsonl").read_text().splitlines()[:-1]
    events = replay(ClaudeCodeRunner().new_parser(make_request("claude-code")), lines, exit_code=0)
    assert events[-1] == {"type": "result", "text": "first answer", "is_error": False}


def test_finish_after_result_adds_nothing_and_noise_is_ignored(make_request: MakeRequest) -> None:
    parser = ClaudeCodeRunner().new_parser(make_request("claude-code"))
    for line in ("", "not json", "[1, 2]", '{"type": "stream_event"}', '{"type": "system", "subtype": "api_retry"}'):
        assert parser.feed(line) == []
    for line in (CLAUDE / "resume_turn1.jsonl").read_text().splitlines():
        parser.feed(line)
    assert parser.finish(0, "") == []


def test_tool_summaries_for_other_tools(make_request: MakeRequest) -> None:
    from agent_fleet_mcp.runners.claude_code import summarize_tool

    req = make_request("claude-code")
    assert summarize_tool("Glob", {"pattern": "**/*.py", "path": "/home/dev/proj/src"}, req)["summary"] == (
        "Glob '**/*.py' in src"
    )
    assert summarize_tool("NotebookEdit", {"notebook_path": "/home/dev/proj/n.ipynb"}, req) == {
        "summary": "NotebookEdit n.ipynb",
        "writes": ["n.ipynb"],
    }
    assert summarize_tool("Read", {"file_path": "/etc/hosts"}, req)["reads"] == ["/etc/hosts"]
    long_cmd = "pytest -q " + "x" * 200
    assert len(summarize_tool("Bash", {"command": long_cmd}, req)["summary"]) == 80
    assert summarize_tool("Bash", {"command": "make\nmake test"}, req)["summary"] == "Bash: make…"
    assert summarize_tool("TodoWrite", {}, req)["summary"] == "TodoWrite"
    assert summarize_tool("mcp__x__y", {"q": 1}, req)["summary"] == 'mcp__x__y {"q":1}'
