"""An agent controls everything inside its worktree, including the ``.git`` link file: it must not be able to turn
our own git calls (commit_turn, changes, merge ...) against the user's checkout. And merges racing each other on one
checkout leave it consistent."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent_fleet_mcp import worktrees
from agent_fleet_mcp.errors import Conflict

from .conftest import fingerprint, git, write

pytestmark = pytest.mark.anyio


async def test_an_agent_relinking_its_worktree_to_the_users_git_dir_gets_refused(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="evil")
    write(Path(ws.path), "src/app.py", "the agent's content\n")
    (Path(ws.path) / "README.md").unlink()
    (Path(ws.path) / ".git").write_text(f"gitdir: {repo / '.git'}\n")  # the agent's own move, inside its worktree
    before = fingerprint(repo)
    for call in (
        lambda: worktrees.commit_turn(ws, "turn"),
        lambda: worktrees.changes(ws),
        lambda: worktrees.diff(ws),
        lambda: worktrees.merge(ws, strategy="squash", dry_run=False),
        lambda: worktrees.is_merged(ws),
    ):
        with pytest.raises(Conflict, match=r"\.git file was changed"):
            await call()
        assert fingerprint(repo) == before
    assert await worktrees.remove(ws, delete_branch=False) is False  # nothing committed from it: branch deleted
    assert fingerprint(repo) == before
    assert (repo / "README.md").exists() and ws.path not in git(repo, "worktree", "list")


async def test_an_agent_relinking_to_another_agents_worktree_gets_refused(repo: Path, home: Path) -> None:
    a = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="a")
    b = await worktrees.create(cwd=str(repo), home=home, agent_id="a2", agent_name="b")
    (Path(b.path) / ".git").write_text((Path(a.path) / ".git").read_text())
    write(Path(b.path), "x.txt", "b's\n")
    with pytest.raises(Conflict, match=r"\.git file was changed"):
        await worktrees.commit_turn(b, "turn")
    assert git(repo, "rev-parse", "fleet/a") == a.base


async def test_concurrent_merges_into_one_checkout_end_consistent(repo: Path, home: Path) -> None:
    agents = [await worktrees.create(cwd=str(repo), home=home, agent_id=f"a{i}", agent_name=f"m{i}") for i in range(3)]
    for i, ws in enumerate(agents):
        write(Path(ws.path), f"out{i}.txt", f"{i}\n")
        await worktrees.commit_turn(ws, f"turn {i}")
    failed: list[worktrees.Workspace] = []

    async def one(ws: worktrees.Workspace) -> None:
        try:
            res = await worktrees.merge(ws, strategy="merge", dry_run=False)
        except Conflict:
            failed.append(ws)
            return
        if not res.merged:
            failed.append(ws)

    async with anyio.create_task_group() as tg:
        for ws in agents:
            tg.start_soon(one, ws)
    for ws in failed:  # a merge that lost the race changed nothing: merging again works
        assert git(repo, "status", "--porcelain") == ""
        assert (await worktrees.merge(ws, strategy="merge", dry_run=False)).merged
    assert git(repo, "status", "--porcelain") == ""
    for i, ws in enumerate(agents):
        assert (repo / f"out{i}.txt").read_text() == f"{i}\n"
        assert await worktrees.is_merged(ws)
        git(repo, "merge-base", "--is-ancestor", f"fleet/m{i}", "HEAD")


async def test_commits_go_on_the_agents_branch_even_if_it_switched_to_a_users_branch(repo: Path, home: Path) -> None:
    git(repo, "branch", "develop")
    develop = git(repo, "rev-parse", "develop")
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    git(ws.path, "checkout", "-q", "develop")  # the agent's own git command, inside its worktree
    write(Path(ws.path), "x.txt", "agent's\n")
    sha = await worktrees.commit_turn(ws, "turn")
    assert git(repo, "rev-parse", "develop") == develop  # the user's branch did not move
    assert sha == git(repo, "rev-parse", "fleet/b") and git(repo, "show", "fleet/b:x.txt") == "agent's"


async def test_an_agent_deleting_its_git_link_loses_nothing(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    write(Path(ws.path), "x.txt", "work\n")
    (Path(ws.path) / ".git").unlink()
    with pytest.raises(Conflict, match="missing or not registered"):
        await worktrees.commit_turn(ws, "turn")
    assert await worktrees.ensure(ws) is True
    assert await worktrees.commit_turn(ws, "turn") is not None
    assert git(repo, "show", "fleet/b:x.txt") == "work"


async def test_locks_left_by_a_killed_agents_git_do_not_block_its_commits_forever(repo: Path, home: Path) -> None:
    import os
    import time

    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    admin = Path(git(ws.path, "rev-parse", "--absolute-git-dir"))
    ref_lock = repo / ".git" / "refs" / "heads" / "fleet" / "b.lock"
    old = time.time() - 3600
    for lock in (admin / "index.lock", ref_lock):
        lock.write_text("")
        os.utime(lock, (old, old))
    write(Path(ws.path), "x.txt", "x\n")
    assert await worktrees.commit_turn(ws, "after a killed turn") is not None
    assert not (admin / "index.lock").exists() and not ref_lock.exists()
    assert not (repo / ".git" / "index.lock").exists()
