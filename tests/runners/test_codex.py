"""codex runner: argv and `codex exec --json` parsing on fixtures that follow codex-rs/exec's ThreadEvent schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_fleet_mcp.runners.codex import USAGE_LEDGER, CodexRunner

from .helpers import FIXTURES, CliBin, MakeRequest, of_type, replay, replay_fixture

CODEX = FIXTURES / "codex"
THREAD = "019a2d7a-41c4-78b1-b7cc-a45d62a89cd5"


@pytest.fixture
def bin_dir(cli_bin: CliBin) -> Path:
    return cli_bin("codex")


def parse(make_request: MakeRequest, name: str, *, exit_code: int | None = 0, stderr: str = "", **req: object):
    return replay_fixture(make_request, "codex", CODEX / f"{name}.jsonl", exit_code=exit_code, stderr=stderr, **req)


# -- argv (finding the CLI: test_headless.py) ---------------------------------------------------------------------


def test_fresh_readonly_argv_reads_the_prompt_from_stdin(make_request: MakeRequest, bin_dir: Path) -> None:
    req = make_request("codex", env={"PATH": str(bin_dir)}, prompt="Explain src/")
    plan = CodexRunner().build(req)
    assert plan.argv == [
        str(bin_dir / "codex"), "exec", "--json", "-s", "read-only", "--skip-git-repo-check", "-C", "/home/dev/proj",
        "-",
    ]  # fmt: skip
    assert plan.stdin_text == "Explain src/"


def test_resume_readwrite_model_and_instructions(make_request: MakeRequest, bin_dir: Path) -> None:
    req = make_request(
        "codex",
        env={"PATH": str(bin_dir)},
        turn=2,
        session_id=THREAD,
        permission="readwrite",
        model="gpt-5-codex",
        system_prompt='Be "brief".\nNo refactors.',
    )
    argv = CodexRunner().build(req).argv
    assert argv[1:] == [
        "exec", "--json", "-s", "workspace-write", "--skip-git-repo-check", "-C", "/home/dev/proj",
        "-m", "gpt-5-codex", "-c", 'developer_instructions="Be \\"brief\\".\\nNo refactors."',
        "resume", THREAD, "-",
    ]  # fmt: skip


def test_environment_is_scrubbed(make_request: MakeRequest, bin_dir: Path) -> None:
    env = {"PATH": str(bin_dir), "HOME": "/h", "OPENAI_API_KEY": "k", "CODEX_HOME": "/c", "ANTHROPIC_API_KEY": "x",
           "CLAUDECODE": "1"}  # fmt: skip
    assert CodexRunner().build(make_request("codex", env=env)).env == {
        "PATH": str(bin_dir),
        "HOME": "/h",
        "OPENAI_API_KEY": "k",
        "CODEX_HOME": "/c",
    }


# -- parsing --------------------------------------------------------------------------------------------------


def test_tool_turn(make_request: MakeRequest) -> None:
    events = parse(make_request, "tool_turn")
    assert events[:2] == [
        {"type": "started", "runner": "codex"},
        {"type": "session", "session_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    ]
    tools = of_type(events, "tool_use")
    assert [(t["name"], t["summary"]) for t in tools] == [
        ("shell", "$ cat src/calc.py"),
        ("shell", "$ pytest -q"),
        ("apply_patch", "Edit src/calc.py, tests/test_calc.py"),
        ("docs.search", 'docs.search {"q":"add semantics"}'),
        ("shell", "$ pytest -q"),
    ]
    assert tools[2]["writes"] == ["src/calc.py", "tests/test_calc.py"]
    results = of_type(events, "tool_result")
    assert [(r["id"], r["ok"]) for r in results] == [
        ("item_1", True), ("item_2", False), ("item_3", True), ("item_4", True), ("item_7", True),
    ]  # fmt: skip
    assert results[1]["exit_code"] == 1
    assert results[0]["size"] == len("def add(a, b):\n    return a - b\n")
    assert results[3]["size"] == len("add(a, b) returns the sum of a and b")
    # reasoning and todo_list items are not reported
    assert [e["text"] for e in of_type(events, "text")] == [
        "The test fails because add() subtracts.",
        "Fixed add() in src/calc.py (it subtracted) and added tests/test_calc.py; all 4 tests pass.",
    ]
    assert events[-2:] == [
        {"type": "usage", "scope": "run", "input": 24763 - 20480, "output": 1220, "cache_read": 20480,
         "cache_write": 0, "cost_usd": None},
        {"type": "result", "text": "Fixed add() in src/calc.py (it subtracted) and added tests/test_calc.py; "
         "all 4 tests pass.", "is_error": False},
    ]  # fmt: skip


def test_resumed_thread_usage_is_the_delta_of_cumulative_totals(make_request: MakeRequest) -> None:
    (u1,) = of_type(parse(make_request, "resume_turn1", turn=1), "usage")
    second = parse(make_request, "resume_turn2", turn=2, session_id=THREAD)
    (u2,) = of_type(second, "usage")
    assert (u1["input"], u1["cache_read"], u1["output"]) == (16504, 0, 20)
    # cumulative 33040 in (16384 cached) / 31 out  minus  16504 / 0 / 20
    assert (u2["input"], u2["cache_read"], u2["output"]) == (16536 - 16384, 16384, 11)
    assert second[-1] == {"type": "result", "text": 'The word was "meow".', "is_error": False}
    ledger = json.loads((make_request("codex").agent_dir / USAGE_LEDGER).read_text())
    assert set(ledger[THREAD]) == {"1", "2"}
    # parsing turn 2 again gives the same numbers
    (again,) = of_type(parse(make_request, "resume_turn2", turn=2, session_id=THREAD), "usage")
    assert again == u2


def test_turn_failed(make_request: MakeRequest) -> None:
    events = parse(make_request, "turn_failed", exit_code=1)
    errors = of_type(events, "error")
    assert [e["kind"] for e in errors] == ["backend", "api_error"]  # retries ("Reconnecting... 1/5") are not errors
    assert errors[0]["message"].startswith("unexpected status 401")
    assert events[-1] == {
        "type": "result",
        "text": "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header",
        "is_error": True,
        "reason": "error",
    }
    assert not of_type(events, "usage")


def test_readonly_sandbox_denials(make_request: MakeRequest) -> None:
    events = parse(make_request, "readonly_declined")
    results = of_type(events, "tool_result")
    assert [r["ok"] for r in results] == [False, False]
    assert of_type(events, "tool_use")[1] == {
        "type": "tool_use", "name": "apply_patch", "summary": "Edit notes.txt", "id": "item_1", "writes": ["notes.txt"],
    }  # fmt: skip
    assert of_type(events, "error") == [
        {
            "type": "error",
            "kind": "warning",
            "message": "apply_patch was rejected: writing is blocked by read-only sandbox",
        }
    ]
    assert events[-1]["is_error"] is False


def test_killed_before_turn_completed(make_request: MakeRequest) -> None:
    lines = (CODEX / "tool_turn.jsonl").read_text().splitlines()[:6]  # ends with a command still running
    events = replay(CodexRunner().new_parser(make_request("codex")), lines, exit_code=137)
    assert events[-2] == {"type": "error", "kind": "exit", "message": "the process was killed by signal 9"}
    assert events[-1]["is_error"] is True and events[-1]["reason"] == "exit_code"


def test_stream_error_then_crash_reports_the_stream_error(make_request: MakeRequest) -> None:
    lines = [
        '{"type":"thread.started","thread_id":"t1"}',
        '{"type":"error","message":"stream disconnected before completion"}',
    ]
    events = replay(CodexRunner().new_parser(make_request("codex")), lines, exit_code=1)
    assert events[-2]["message"] == "the process exited with code 1: stream disconnected before completion"
