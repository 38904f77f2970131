"""The anthropic worker (real worker process, the offline scripted Messages API) edits its worktree, not the user's
checkout, with no runner change: its cwd is the worktree at the same relative path; the turn is committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall
from agent_fleet_mcp.worktrees import Changes

from .conftest import finish, git

pytestmark = pytest.mark.anyio


async def test_the_anthropic_worker_edits_its_worktree(iso_settings: Settings, repo: Path) -> None:
    script = [ToolCall("write_file", {"path": "made.py", "content": "print('hi')\n"}), "done"]
    with ScriptedModelServer(script) as srv:
        env = dict(iso_settings.env, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=srv.base_url)
        settings = Settings(home=iso_settings.home, project_dir=repo, env=env, poll_interval_s=0.05)
        try:
            async with SqliteStore(settings.db_path) as store:
                fleet = Fleet(settings, store)
                async with fleet.running():
                    res = await fleet.create_agent(name="ai", runner="anthropic", permission="readwrite",
                                                   cwd=str(repo / "src"), prompt="add made.py\nthen stop")  # fmt: skip
                    await finish(fleet, "ai")
                    agent = await fleet.get_agent("ai")
        finally:
            forkserver.stop(settings.home)
        srv.assert_complete()
    turn = await _turn(settings, agent.id)
    assert turn == "succeeded"
    ws = res.agent.workspace
    assert ws is not None and Path(ws.cwd, "made.py").read_text() == "print('hi')\n"
    assert not (repo / "src/made.py").exists()
    assert git(repo, "log", "-1", "--format=%s", "fleet/ai") == "add made.py"
    assert agent.changes == Changes(1, 0, ("src/made.py",))


async def _turn(settings: Settings, agent_id: str) -> str | None:
    async with SqliteStore(settings.db_path) as store:
        t = await store.get_turn(agent_id, 1)
        return t.status if t else None
