"""The turn-outcome decision (turn_outcome.py), unit-tested without processes: what a turn's transcript and exit
code say it came to, as the supervisor, the CLI and the repair all decide it."""

from __future__ import annotations

import os
from pathlib import Path

from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.turn_outcome import ended_on_disk, turn_outcome
from agent_fleet_mcp.turn_stats import TurnStats


def _stats(*events: Event) -> TurnStats:
    stats = TurnStats()
    for ev in events:
        stats.apply(ev)
    return stats


def test_a_result_in_the_stream_decides() -> None:
    ok = _stats(make("result", text="all done", is_error=False))
    assert turn_outcome(ok, stream_result=True, exit_code=None) == ("succeeded", None, None)
    bad = _stats(make("error", kind="api", message="overloaded"), make("result", text="", is_error=True, reason="api"))
    status, reason, error = turn_outcome(bad, stream_result=True, exit_code=1)
    assert (status, reason) == ("failed", "api") and error and "overloaded" in error


def test_a_result_built_from_the_exit_code_needs_the_exit_code() -> None:
    closed = _stats(make("result", text="out", is_error=False))  # what StreamParser.finish builds from exit 0
    assert turn_outcome(closed, stream_result=False, exit_code=0)[0] == "succeeded"
    status, reason, error = turn_outcome(closed, stream_result=False, exit_code=None)
    assert status == "lost" and reason == error and "exit status is unknown" in (reason or "")


def test_no_result_at_all_is_lost() -> None:
    assert turn_outcome(TurnStats(), stream_result=False, exit_code=0)[0] == "lost"


def test_ended_on_disk_prefers_the_exit_file(tmp_path: Path) -> None:
    files = TurnFiles.for_turn(tmp_path, 1)
    assert ended_on_disk(files) is None
    files.out.write_text("{}\n")
    os.utime(files.out, (100.0, 100.0))
    assert ended_on_disk(files) == 100.0
    files.exit.write_text("0\n")
    os.utime(files.exit, (200.0, 200.0))
    assert ended_on_disk(files) == 200.0


def test_a_failure_says_why_from_its_errors_its_reason_or_plainly() -> None:
    with_error = _stats(make("error", kind="exit", message="code 3"), make("result", text="", is_error=True))
    assert turn_outcome(with_error, stream_result=False, exit_code=3) == ("failed", None, "exit: code 3")
    reason_only = _stats(make("result", text="", is_error=True, reason="max_turns"))
    assert turn_outcome(reason_only, stream_result=True, exit_code=None) == ("failed", "max_turns", "max_turns")
    bare = _stats(make("result", text="", is_error=True))
    assert turn_outcome(bare, stream_result=True, exit_code=None) == ("failed", None, "failed")


def test_a_success_carries_no_reason_or_error() -> None:
    ok = _stats(make("error", kind="warning", message="retrying"), make("result", text="fine", is_error=False))
    assert turn_outcome(ok, stream_result=True, exit_code=0) == ("succeeded", None, None)
