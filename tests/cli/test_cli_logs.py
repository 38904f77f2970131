"""`agent-fleet logs`: a finished turn through the runner's parser, --turn, --raw, and the errors a user can make."""

from __future__ import annotations

from agent_fleet_mcp.cli.render import LogLines
from agent_fleet_mcp.events import make

from .conftest import Home, invoke


def test_logs_latest_turn(populated: Home) -> None:
    res = invoke(populated.path, "logs", "echo-1")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "echo-1 · turn 2 of 2 · succeeded · command" in out
    assert "text: echo: second [bold]turn[/bold]" in out
    assert "RESULT: (the text above, 30 chars)" in out  # not printed twice
    assert "── turn 2 succeeded" in out
    assert "hello fleet" not in out


def test_logs_earlier_turn(populated: Home) -> None:
    out = invoke(populated.path, "logs", "echo-1", "--turn", "1").stdout
    assert "turn 1 of 2" in out and "text: echo: hello fleet" in out and "RESULT: (the text above" in out


def test_logs_of_a_failed_turn_show_the_error(populated: Home) -> None:
    out = invoke(populated.path, "logs", "failer-1").stdout
    lines = out.splitlines()
    assert any(line.endswith("text: working 1/3") for line in lines)
    assert any("ERROR exit: the process exited with code 3: boom: disk full" in line for line in lines)
    assert any("RESULT (error) [exit_code]: (the text above, 35 chars)" in line for line in lines)
    assert "── turn 1 failed" in out


def test_logs_raw_is_the_transcript_as_written(populated: Home) -> None:
    res = invoke(populated.path, "logs", "failer-1", "--raw")
    assert res.exit_code == 0
    assert res.stdout.splitlines() == ["working 1/3", "working 2/3", "working 3/3"]
    assert "failer-1 · turn 1 of 1" in res.stderr  # the header stays off stdout (pipe it to jq, grep ...)


def test_logs_bad_turn_and_agent(populated: Home) -> None:
    res = invoke(populated.path, "logs", "echo-1", "--turn", "9")
    assert res.exit_code == 1 and "has turns 1..2; there is no turn 9" in res.stderr
    res = invoke(populated.path, "logs", "nobody")
    assert res.exit_code == 1 and "no agent named 'nobody'" in res.stderr and "echo-1" in res.stderr
    assert invoke(populated.path, "logs", "echo-1", "--turn", "0").exit_code == 2


def test_result_is_shown_unless_it_repeats_the_text() -> None:
    lines = LogLines()
    assert lines.render(make("tool_use", name="read", summary="read a.py", reads=["a.py"])).plain.endswith(
        "tool  read a.py"
    )
    assert lines.render(make("text", text="Reading [a.py]")).plain.endswith("text: Reading [a.py]")
    assert lines.render(make("result", text="Summary:\nall good", is_error=False)).plain.endswith(
        "RESULT: Summary:\n         all good"
    )
    again = LogLines()
    again.render(make("text", text="the answer"))
    assert again.render(make("result", text="the answer", is_error=False)).plain.endswith(
        "RESULT: (the text above, 10 chars)"
    )
