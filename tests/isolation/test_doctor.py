"""`agent-fleet doctor` reports stale worktrees (their agent no longer exists) and `doctor --repair` prunes them:
`git worktree list` in the user's checkout then shows no stale entry; live agents' worktrees are never touched."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
from click.testing import CliRunner

from agent_fleet_mcp.cli.main import main
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.worktrees import Workspace

from .conftest import branches, worktree_list


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"AGENT_FLEET_HOME": str(settings.home), "COLUMNS": "300", "NO_COLOR": "1"}
    res = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return res.exit_code, res.output


def test_doctor_reports_and_repair_prunes_stale_worktrees(iso_settings: Settings, repo: Path) -> None:
    async def make() -> tuple[Workspace, Workspace]:
        async with SqliteStore(iso_settings.db_path) as store:
            fleet = Fleet(iso_settings, store)
            live = await fleet.create_agent(name="live", template="editor", cwd=str(repo))
            gone = await fleet.create_agent(name="gone", template="editor", cwd=str(repo))
            await store.purge_agent(gone.agent.id)  # a crash between purging it and removing its worktree
            assert live.agent.workspace is not None and gone.agent.workspace is not None
            return live.agent.workspace, gone.agent.workspace

    live, gone = anyio.run(make)
    old = time.time() - 3600
    os.utime(gone.path, (old, old))
    assert len(worktree_list(repo)) == 3

    code, out = cli(iso_settings, "doctor", "--json")
    [check] = [c for c in json.loads(out)["checks"] if c["name"] == "worktrees"]
    assert check["level"] == "warn" and gone.path in check["detail"] and live.path not in check["detail"]
    assert "doctor --repair" in check["fix"]
    assert len(worktree_list(repo)) == 3  # doctor alone changes nothing

    code, out = cli(iso_settings, "doctor", "--repair")
    assert code == 0 and "pruned 1 stale worktree(s)" in out and gone.path in out
    assert sorted(worktree_list(repo)) == sorted([str(repo.resolve()), live.path])
    assert not Path(gone.path).exists() and Path(live.path).is_dir()
    assert "fleet/gone" in branches(repo)  # its branch stays for the user to merge or drop

    code, out = cli(iso_settings, "doctor", "--json")
    [check] = [c for c in json.loads(out)["checks"] if c["name"] == "worktrees"]
    assert check["level"] == "ok" and "1 live agent worktree(s)" in check["detail"]


def test_repair_leaves_a_worktree_being_created_alone(iso_settings: Settings, repo: Path) -> None:
    """A worktree made a moment ago whose agent is not in the store yet (another server creating it) is not stale."""

    async def make() -> Workspace:
        async with SqliteStore(iso_settings.db_path) as store:
            res = await Fleet(iso_settings, store).create_agent(name="new", template="editor", cwd=str(repo))
            await store.purge_agent(res.agent.id)
            assert res.agent.workspace is not None
            return res.agent.workspace

    ws = anyio.run(make)
    code, out = cli(iso_settings, "doctor", "--repair")
    assert code == 0 and "pruned" not in out and Path(ws.path).is_dir() and ws.path in worktree_list(repo)
