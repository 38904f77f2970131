"""Shared helpers of the CLI-runner tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners.base import StreamParser, TurnRequest
from agent_fleet_mcp.runners.headless import find_cli

FIXTURES = Path(__file__).parent.parent / "fixtures"
PROJ = Path("/home/dev/proj")  # the cwd the recorded fixtures were normalized to

MakeRequest = Callable[..., TurnRequest]  # the `make_request` fixture (conftest.py)
CliBin = Callable[[str], Path]  # the `cli_bin` fixture (conftest.py)
Json = dict[str, Any]  # an event as the JSON object it is on disk


def replay(
    parser: StreamParser, lines: list[str] | Path, *, exit_code: int | None = 0, stderr: str = ""
) -> list[Json]:
    """Feed every line, then finish; timestamps dropped so events compare by value. The events come back as the
    JSON objects they are on disk (the tests look at any field without narrowing on the type first)."""
    if isinstance(lines, Path):
        lines = lines.read_text(encoding="utf-8").splitlines()
    events: list[Json] = []
    for line in lines:
        events.extend(dict(ev) for ev in parser.feed(line))
    events.extend(dict(ev) for ev in parser.finish(exit_code, stderr))
    for ev in events:
        assert isinstance(ev.pop("ts"), float)
    return events


def replay_fixture(
    make_request: MakeRequest, runner: str, path: Path, *, exit_code: int | None = 0, stderr: str = "", **req: object
) -> list[Json]:
    """``replay`` of the recorded stream ``path`` through a new parser of ``runner`` for ``make_request(**req)``."""
    parser = get_runner(runner).new_parser(make_request(runner, **req))
    return replay(parser, path, exit_code=exit_code, stderr=stderr)


def of_type(events: list[Json], type_: str) -> list[Json]:
    return [e for e in events if e["type"] == type_]


def fake_exe(folder: Path, name: str) -> Path:
    """An executable stub named ``name`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def real_claude(what: str) -> str:
    """The pinned real `claude` CLI, or a loud skip naming ``what`` did not run (a failure under CI=true)."""
    exe = find_cli("claude", os.environ)
    if exe is None:
        msg = (
            f"\n\n!!! The real `claude` CLI is NOT INSTALLED: {what} did not run. !!!\n"
            "!!! Install it with: bash scripts/install-tools.sh claude   (pinned, into .tools/) !!!\n"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return exe
