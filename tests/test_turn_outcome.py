"""The turn-outcome decision (turn_outcome.py), unit-tested without processes: what a turn's transcript and exit
code say it came to, as the supervisor, the CLI and the repair all decide it."""

from __future__ import annotations

import os
from pathlib import Path

from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.tracking import TurnStats
from agent_fleet_mcp.turn_outcome import ended_on_disk, turn_outcome


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
