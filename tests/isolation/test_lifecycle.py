"""Lifecycle without leftovers: delete removes the worktree and keeps the branch only with unmerged work (and says
so), purge removes the branch too; a restarted fleet re-attaches its agents' worktrees (a deleted worktree dir is
re-made from the branch) and prunes the worktrees of agents that no longer live."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.fleet import Fleet

from .conftest import branches, finish, git, worktree_list

pytestmark = pytest.mark.anyio


async def test_delete_keeps_the_branch_only_with_unmerged_work_and_says_so(fleet: Fleet, repo: Path) -> None:
    await fleet.create_agent(name="busy", template="editor", cwd=str(repo), prompt="append work.txt done")
    await fleet.create_agent(name="idle", template="editor", cwd=str(repo))  # never changed anything
    await finish(fleet, "busy")
    paths = {n: (await fleet.get_agent(n)).workspace for n in ("busy", "idle")}
    gone = {d.agent.name: d for d in await fleet.delete(["busy", "idle"])}
    busy, idle = gone["busy"].worktree, gone["idle"].worktree
    assert busy is not None and busy.branch_kept and "fleet/busy holds unmerged work" in busy.note
    assert idle is not None and not idle.branch_kept and "were removed" in idle.note
    assert branches(repo) == ["fleet/busy", "main"] and worktree_list(repo) == [str(repo.resolve())]
    assert all(ws is not None and not Path(ws.path).exists() for ws in paths.values())
    assert git(repo, "show", "fleet/busy:work.txt") == "done"
    # the kept branch blocks a new agent of the same name until it is merged or dropped
    with pytest.raises(Exception, match=r"fleet/busy already exists"):
        await fleet.create_agent(name="busy", template="editor", cwd=str(repo))


async def test_uncommitted_work_is_committed_before_the_branch_is_kept(fleet: Fleet, repo: Path) -> None:
    res = await fleet.create_agent(name="u", template="editor", cwd=str(repo))
    assert res.agent.workspace is not None
    Path(res.agent.workspace.path, "late.txt").write_text("written after the last turn\n")
    [done] = await fleet.delete(["u"])
    assert done.worktree is not None and done.worktree.branch_kept
    assert git(repo, "show", "fleet/u:late.txt") == "written after the last turn"


async def test_purge_removes_the_branch_too(fleet: Fleet, repo: Path) -> None:
    await fleet.create_agent(name="p", template="editor", cwd=str(repo), prompt="append work.txt done")
    await finish(fleet, "p")
    [done] = await fleet.delete(["p"], purge=True)
    assert done.worktree is not None and not done.worktree.branch_kept
    assert branches(repo) == ["main"] and worktree_list(repo) == [str(repo.resolve())]
    assert not any((fleet.settings.home / "worktrees").iterdir())
