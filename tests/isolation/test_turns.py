"""One commit per turn on fleet/<agent>, the turn's first prompt line as its message, the changes stored; parallel
writers each in their own worktree, editing the same file without touching each other or the user's checkout."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.worktrees import Changes

from .conftest import finish, git

pytestmark = pytest.mark.anyio


async def test_each_turn_is_one_commit_with_its_first_prompt_line(fleet: Fleet, repo: Path) -> None:
    await fleet.create_agent(name="w", template="editor", cwd=str(repo),
                             prompt="append src/app.py line 21\nappend docs/a.md first")  # fmt: skip
    await finish(fleet, "w")
    await fleet.command_agent("w", "write docs/a.md second\nappend docs/b.md b")
    await fleet.command_agent("w", "nothing to change in this turn")  # queued behind: no commit of its own
    await finish(fleet, "w")
    agent = await fleet.get_agent("w")
    assert agent.workspace is not None
    base = agent.workspace.base
    log = git(repo, "log", "--format=%s|%an", f"{base}..fleet/w").splitlines()
    assert log == ["write docs/a.md second|w", "append src/app.py line 21|w"]
    assert agent.changes == Changes(added=3, removed=0, files=("docs/a.md", "docs/b.md", "src/app.py"))
    assert agent.changes is not None and agent.changes.summary() == "+3 -0, 3 files"
    assert git(agent.workspace.path, "status", "--porcelain") == ""  # nothing left uncommitted


async def test_a_failed_turn_keeps_its_edits_in_a_commit(fleet: Fleet, repo: Path) -> None:
    await fleet.create_agent(name="f", template="editor", cwd=str(repo), prompt="half done\nappend half.txt x\nfail")
    await finish(fleet, "f")
    agent = await fleet.get_agent("f")
    turn = await fleet.store.get_turn(agent.id, 1)
    assert turn is not None and turn.status == "failed"
    assert agent.workspace is not None and git(repo, "log", "-1", "--format=%s", "fleet/f") == "half done"
    assert git(repo, "show", "fleet/f:half.txt") == "x"
    assert agent.changes == Changes(1, 0, ("half.txt",))


async def test_parallel_writers_each_edit_the_same_file_in_their_own_worktree(fleet: Fleet, repo: Path) -> None:
    before = (repo / "src/app.py").read_text()
    head = git(repo, "rev-parse", "HEAD")

    async def make(name: str) -> None:
        await fleet.create_agent(name=name, template="editor", cwd=str(repo), prompt=f"append src/app.py by {name}")

    async with anyio.create_task_group() as tg:
        for name in ("left", "right", "third"):
            tg.start_soon(make, name)
    await finish(fleet, "left", "right", "third")
    for name in ("left", "right", "third"):
        agent = await fleet.get_agent(name)
        assert agent.workspace is not None and agent.changes == Changes(1, 0, ("src/app.py",))
        assert Path(agent.workspace.path, "src/app.py").read_text() == before + f"by {name}\n"
        assert git(repo, "show", f"fleet/{name}:src/app.py").endswith(f"by {name}")
    assert (repo / "src/app.py").read_text() == before and git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


async def test_work_left_uncommitted_is_committed_before_the_next_turn(fleet: Fleet, repo: Path) -> None:
    """A crash between a turn's exit and its commit leaves edits in the worktree: the next turn commits them first,
    on their own."""
    await fleet.create_agent(name="c", template="editor", cwd=str(repo), prompt="append one.txt 1")
    await finish(fleet, "c")
    agent = await fleet.get_agent("c")
    assert agent.workspace is not None
    Path(agent.workspace.path, "stray.txt").write_text("left behind\n")
    await fleet.command_agent("c", "append two.txt 2")
    await finish(fleet, "c")
    log = git(repo, "log", "--format=%s", f"{agent.workspace.base}..fleet/c").splitlines()
    assert log == ["append two.txt 2", "work left uncommitted before turn 2", "append one.txt 1"]
    assert git(repo, "show", "--name-only", "--format=", "fleet/c~1") == "stray.txt"
