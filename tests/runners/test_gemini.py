"""gemini runner: argv and `gemini -o stream-json` parsing on fixtures that follow gemini-cli's JsonStreamEvent."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.runners.gemini import MAX_ARGV_PROMPT, GeminiRunner

from .helpers import FIXTURES, CliBin, MakeRequest, of_type, replay, replay_fixture

GEMINI = FIXTURES / "gemini"
SESSION = "c1b2e0a4-5f0e-4d1a-9a51-1f3f2f6b7a10"


@pytest.fixture
def bin_dir(cli_bin: CliBin) -> Path:
    return cli_bin("gemini")


def parse(make_request: MakeRequest, name: str, *, exit_code: int | None = 0, stderr: str = "", **req: object):
    return replay_fixture(make_request, "gemini", GEMINI / f"{name}.jsonl", exit_code=exit_code, stderr=stderr, **req)


# -- argv (finding the CLI: test_headless.py) ---------------------------------------------------------------------


def test_readonly_argv(make_request: MakeRequest, bin_dir: Path) -> None:
    plan = GeminiRunner().build(make_request("gemini", env={"PATH": str(bin_dir)}, prompt="What is in src/?"))
    assert plan.argv == [
        str(bin_dir / "gemini"), "-o", "stream-json", "--approval-mode", "default", "-p", "What is in src/?",
    ]  # fmt: skip
    assert plan.stdin_text is None


def test_readwrite_resume_model_tools(make_request: MakeRequest, bin_dir: Path) -> None:
    req = make_request(
        "gemini",
        env={"PATH": str(bin_dir)},
        turn=2,
        session_id=SESSION,
        permission="readwrite",
        model="gemini-2.5-flash",
        tools=("read_file", "run_shell_command(git status)"),
        system_prompt="Only touch docs/.",
        prompt="continue",
    )
    # (the system prompt went in front of turn 1 only)
    assert GeminiRunner().build(req).argv[1:] == [
        "-o", "stream-json", "--approval-mode", "auto_edit", "-m", "gemini-2.5-flash",
        "--allowed-tools", "read_file,run_shell_command(git status)", "--resume", SESSION, "-p", "continue",
    ]  # fmt: skip


def test_system_prompt_leads_the_first_prompt(make_request: MakeRequest, bin_dir: Path) -> None:
    req = make_request("gemini", env={"PATH": str(bin_dir)}, system_prompt="Only touch docs/.", prompt="go")
    argv = GeminiRunner().build(req).argv
    assert argv[-1] == "<instructions>\nOnly touch docs/.\n</instructions>\n\ngo"


def test_huge_prompt_goes_on_stdin(make_request: MakeRequest, bin_dir: Path) -> None:
    big = "x" * (MAX_ARGV_PROMPT + 1)
    plan = GeminiRunner().build(make_request("gemini", env={"PATH": str(bin_dir)}, prompt=big))
    assert plan.argv[-2:] == ["-p", ""]
    assert plan.stdin_text == big


def test_environment_is_scrubbed(make_request: MakeRequest, bin_dir: Path) -> None:
    env = {"PATH": str(bin_dir), "GEMINI_API_KEY": "g", "GOOGLE_CLOUD_PROJECT": "p", "OPENAI_API_KEY": "o",
           "CLAUDECODE": "1", "HOME": "/h"}  # fmt: skip
    assert GeminiRunner().build(make_request("gemini", env=env)).env == {
        "PATH": str(bin_dir),
        "GEMINI_API_KEY": "g",
        "GOOGLE_CLOUD_PROJECT": "p",
        "HOME": "/h",
    }


# -- parsing --------------------------------------------------------------------------------------------------


def test_tool_turn(make_request: MakeRequest) -> None:
    events = parse(make_request, "tool_turn")
    assert [e["type"] for e in events] == [
        "started", "session", "text", "tool_use", "tool_use", "tool_result", "tool_result", "tool_use",
        "tool_result", "text", "usage", "result",
    ]  # fmt: skip
    assert events[0] == {"type": "started", "runner": "gemini", "model": "gemini-2.5-pro"}
    assert events[1] == {"type": "session", "session_id": SESSION}
    # delta chunks are concatenated into one text per reply
    assert [e["text"] for e in of_type(events, "text")] == [
        "I'll read both files.",
        "`src/calc.py` defines `add(a, b)`, which returns the sum of its arguments. `src/missing.py` does not exist.",
    ]
    tools = of_type(events, "tool_use")
    assert [t["summary"] for t in tools] == [
        "read_file src/calc.py",
        "read_file src/missing.py",
        "grep 'def add' in src",
    ]
    assert tools[0]["reads"] == ["src/calc.py"]
    results = of_type(events, "tool_result")
    assert [(r["ok"], r["size"]) for r in results] == [
        (True, 0),
        (False, len("File not found: /home/dev/proj/src/missing.py")),
        (True, len("Found 1 match")),
    ]
    assert results[1]["id"] == "read_file-1763702402502-8c7d6e5f4a3b2"
    assert events[-2:] == [
        {"type": "usage", "scope": "run", "input": 6550, "output": 265, "cache_read": 4096, "cache_write": 0,
         "model": "gemini-2.5-pro", "cost_usd": None},
        {"type": "result", "text": events[-3]["text"], "is_error": False},
    ]  # fmt: skip


def test_resumed_session(make_request: MakeRequest) -> None:
    events = parse(make_request, "resume_turn", turn=2, session_id=SESSION)
    assert of_type(events, "session") == [{"type": "session", "session_id": SESSION}]
    (usage,) = of_type(events, "usage")
    assert (usage["input"], usage["cache_read"], usage["output"]) == (1000, 10240, 50)  # this process's metrics
    assert events[-1] == {"type": "result", "text": "You asked what src/calc.py does.", "is_error": False}


def test_error_result(make_request: MakeRequest) -> None:
    events = parse(make_request, "error_result", exit_code=1)
    errors = of_type(events, "error")
    assert errors == [
        {"type": "error", "kind": "warning", "message": "Loop detected, stopping execution"},
        {"type": "error", "kind": "api_error", "error_type": "Error",
         "message": "[API Error: You have exhausted your capacity on this model. Your quota will reset after 0s.]"},
    ]  # fmt: skip
    assert events[-1] == {
        "type": "result",
        "text": "[API Error: You have exhausted your capacity on this model. Your quota will reset after 0s.]",
        "is_error": True,
        "reason": "error",
    }


def test_max_turns(make_request: MakeRequest) -> None:
    events = parse(make_request, "max_turns", exit_code=53)
    assert [e["kind"] for e in of_type(events, "error")] == ["backend", "max_turns"]
    assert events[-1]["reason"] == "max_turns" and events[-1]["is_error"] is True
    assert of_type(events, "tool_use")[0]["summary"] == "ls ."


def test_crash_without_result(make_request: MakeRequest) -> None:
    events = parse(make_request, "crash_no_result", exit_code=1, stderr="Error when talking to Gemini API\n")
    assert [e["type"] for e in events] == ["started", "session", "text", "error", "result"]
    assert events[2]["text"] == "Looking at the build configuration."
    assert events[-2]["message"] == "the process exited with code 1: Error when talking to Gemini API"
    assert events[-1] == {
        "type": "result",
        "text": "Looking at the build configuration.",
        "is_error": True,
        "reason": "exit_code",
    }


@pytest.mark.parametrize(("code", "reason"), [(41, "auth"), (53, "max_turns"), (2, "exit_code")])
def test_fatal_exit_codes(make_request: MakeRequest, code: int, reason: str) -> None:
    events = replay(GeminiRunner().new_parser(make_request("gemini")), [], exit_code=code)
    assert events[-1]["reason"] == reason
