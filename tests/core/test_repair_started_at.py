"""A repaired turn's start is never before its queueing: the fork server's spares are processes made ahead of the
turns they run (runners/zygote.py), so the process's birth is no longer the turn's start."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from agent_fleet_mcp import repair
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import process, started
from agent_fleet_mcp.spec import AgentSpec


def test_a_running_turn_of_an_older_process_starts_when_it_was_queued(tmp_path: Path) -> None:
    agent_dir = tmp_path / "home" / "agents" / "ag_1"
    files = process.TurnFiles.for_turn(agent_dir / "turns", 1)
    files.out.parent.mkdir(parents=True)
    files.prompt.write_text("go")
    files.out.write_text("")
    assert started.create(files.exit, os.getpid())  # this process: born well before the prompt was written
    born = psutil.Process().create_time()
    queued = files.prompt.stat().st_mtime
    assert born < queued
    settings = Settings(home=tmp_path / "home", project_dir=tmp_path, env={})
    [turn], _ = repair._plan_turns(agent_dir, "ag_1", "a", AgentSpec(), settings)  # pyright: ignore[reportPrivateUsage]
    assert turn.row["status"] == "running" and turn.row["pid"] == os.getpid()
    assert turn.row["proc_start"] == born  # its identity is still the process's
    assert turn.row["started_at"] == queued  # before: its birth, before it was queued
