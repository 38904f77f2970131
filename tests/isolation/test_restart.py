"""Restart: a second Fleet on the same home re-attaches its agents' worktrees (a deleted worktree dir is re-made from
the branch) and prunes the worktrees of agents that no longer live, leaving no stale `git worktree list` entry."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.worktrees import Changes

from .conftest import finish, worktree_list

pytestmark = pytest.mark.anyio


async def test_a_restarted_fleet_reattaches_and_remakes_a_lost_worktree(iso_settings: Settings, repo: Path) -> None:
    async with SqliteStore(iso_settings.db_path) as store:
        first = Fleet(iso_settings, store)
        async with first.running():
            await first.create_agent(name="keep", template="editor", cwd=str(repo), prompt="append a.txt 1")
            await first.create_agent(name="lost", template="editor", cwd=str(repo), prompt="append b.txt 1")
            await finish(first, "keep", "lost")
    async with SqliteStore(iso_settings.db_path) as store:
        second = Fleet(iso_settings, store)
        keep, lost = await second.get_agent("keep"), await second.get_agent("lost")
        assert keep.workspace is not None and lost.workspace is not None
        marker = Path(keep.workspace.path, "uncommitted.txt")
        marker.write_text("the agent's, not committed yet\n")
        shutil.rmtree(lost.workspace.path)  # the dir is gone, its registration stale
        async with second.running():  # startup: re-attach
            assert Path(lost.workspace.path, "b.txt").read_text() == "1\n"  # re-made from its branch
            assert marker.read_text() == "the agent's, not committed yet\n"  # a present worktree is left alone
            await second.command_agent("lost", "append b.txt 2")
            await finish(second, "lost")
        got = await second.get_agent("lost")
        assert got.changes == Changes(2, 0, ("b.txt",)) and Path(lost.workspace.path, "b.txt").read_text() == "1\n2\n"
        assert sorted(worktree_list(repo)) == sorted([str(repo.resolve()), keep.workspace.path, lost.workspace.path])


async def test_startup_prunes_worktrees_whose_agent_is_gone(iso_settings: Settings, repo: Path) -> None:
    async with SqliteStore(iso_settings.db_path) as store:
        fleet = Fleet(iso_settings, store)
        live = await fleet.create_agent(name="live", template="editor", cwd=str(repo))
        gone = await fleet.create_agent(name="gone", template="editor", cwd=str(repo))
        assert live.agent.workspace is not None and gone.agent.workspace is not None
        await store.purge_agent(gone.agent.id)  # as if the server died between purging it and removing its worktree
        old = time.time() - 3600
        os.utime(gone.agent.workspace.path, (old, old))  # not one being created right now
        assert len(worktree_list(repo)) == 3
        async with fleet.running():
            pass
    assert sorted(worktree_list(repo)) == sorted([str(repo.resolve()), live.agent.workspace.path])
    assert not Path(gone.agent.workspace.path).exists() and Path(live.agent.workspace.path).is_dir()
