"""The fake process table's exit descriptors (FakeRunner.exit_fd, the fake's pidfd): readable once the turn exits,
and each pipe end closed exactly once. A second close at garbage collection closed whatever descriptor had reused
the number (a follower's, SQLite's): a fleet test then saw a live turn as ended."""

from __future__ import annotations

import gc
import os
import select
from pathlib import Path

from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.testing.fake_runner import FakeTurn


def fake_turn(tmp_path: Path) -> FakeTurn:
    files = TurnFiles(out=tmp_path / "out.jsonl", err=tmp_path / "err.log", exit=tmp_path / "exit",
                      prompt=tmp_path / "prompt")  # fmt: skip
    return FakeTurn("ag_1", "a", 1, "go", 5_000_000, files)


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_the_exit_fd_turns_readable_when_the_turn_exits(tmp_path: Path) -> None:
    turn = fake_turn(tmp_path)
    fd = turn.exit_fd()
    assert fd is not None
    try:
        assert not readable(fd)
        turn.exit(0)
        assert readable(fd) and os.read(fd, 1) == b""  # EOF, as a pidfd reports an exit
        assert turn.exit_fd() is None  # an ended turn has nothing to watch
    finally:
        os.close(fd)


def test_a_collected_turn_does_not_close_a_descriptor_that_reused_its_pipes_number(tmp_path: Path) -> None:
    turn = fake_turn(tmp_path)
    fd = turn.exit_fd()
    assert fd is not None
    os.close(fd)
    turn.exit(0)  # closes the write end: its number is free again
    r, w = os.pipe()  # likely reuses the numbers just freed
    try:
        del turn
        gc.collect()
        os.write(w, b"x")  # both ends still ours
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)


def test_a_turn_left_running_closes_its_pipe_when_collected(tmp_path: Path) -> None:
    turn = fake_turn(tmp_path)
    fd = turn.exit_fd()
    assert fd is not None
    try:
        del turn
        gc.collect()
        assert readable(fd) and os.read(fd, 1) == b""  # the write end went with the turn: no descriptor leaks
    finally:
        os.close(fd)
