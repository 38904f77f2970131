"""Shared helpers of the CLI-runner tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent_fleet_mcp.events import Event
from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners.base import StreamParser, TurnRequest

FIXTURES = Path(__file__).parent.parent / "fixtures"
PROJ = Path("/home/dev/proj")  # the cwd the recorded fixtures were normalized to

MakeRequest = Callable[..., TurnRequest]  # the `make_request` fixture (conftest.py)
CliBin = Callable[[str], Path]  # the `cli_bin` fixture (conftest.py)


def replay(
    parser: StreamParser, lines: list[str] | Path, *, exit_code: int | None = 0, stderr: str = ""
) -> list[Event]:
    """Feed every line, then finish; timestamps dropped so events compare by value."""
    if isinstance(lines, Path):
        lines = lines.read_text(encoding="utf-8").splitlines()
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line))
    events.extend(parser.finish(exit_code, stderr))
    for ev in events:
        assert isinstance(ev.pop("ts"), float)
    return events


def replay_fixture(
    make_request: MakeRequest, runner: str, path: Path, *, exit_code: int | None = 0, stderr: str = "", **req: object
) -> list[Event]:
    """``replay`` of the recorded stream ``path`` through a new parser of ``runner`` for ``make_request(**req)``."""
    parser = get_runner(runner).new_parser(make_request(runner, **req))
    return replay(parser, path, exit_code=exit_code, stderr=stderr)


def of_type(events: list[Event], type_: str) -> list[Event]:
    return [e for e in events if e["type"] == type_]


def fake_exe(folder: Path, name: str) -> Path:
    """An executable stub named ``name`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe
