"""worktrees.remove / prune / ensure: no worktree, registration or branch left behind (unless it holds unmerged
work), re-attach after a restart, and never a live agent's worktree or the user's checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent_fleet_mcp import worktrees
from agent_fleet_mcp.errors import InvalidRequest

from .conftest import git, write

pytestmark = pytest.mark.anyio


def listed(repo: Path) -> str:
    return git(repo, "worktree", "list", "--porcelain")


async def make(repo: Path, home: Path, name: str) -> worktrees.Workspace:
    return await worktrees.create(cwd=str(repo), home=home, agent_id=f"id-{name}", agent_name=name)


async def test_remove_without_work_leaves_no_worktree_and_no_branch(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "idle")
    assert await worktrees.remove(ws, delete_branch=False) is False
    assert not Path(ws.path).exists() and ws.path not in listed(repo)
    assert git(repo, "branch", "--list", "fleet/*") == ""
    assert not (repo / ".git" / "worktrees" / "id-idle").exists()


async def test_remove_keeps_a_branch_with_unmerged_work_committing_what_was_pending(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "busy")
    write(Path(ws.path), "work.txt", "never committed by a turn\n")
    assert await worktrees.remove(ws, delete_branch=False) is True
    assert not Path(ws.path).exists() and ws.path not in listed(repo)
    assert git(repo, "show", "fleet/busy:work.txt") == "never committed by a turn"


async def test_remove_with_delete_branch_drops_unmerged_work(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "purged")
    write(Path(ws.path), "work.txt", "x\n")
    await worktrees.commit_turn(ws, "turn")
    assert await worktrees.remove(ws, delete_branch=True) is False
    assert git(repo, "branch", "--list", "fleet/*") == "" and ws.path not in listed(repo)


async def test_remove_deletes_a_merged_branch(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "done")
    write(Path(ws.path), "work.txt", "x\n")
    assert (await worktrees.merge(ws, strategy="merge", dry_run=False)).merged
    assert await worktrees.remove(ws, delete_branch=False) is False
    assert git(repo, "branch", "--list", "fleet/*") == ""
    assert (repo / "work.txt").read_text() == "x\n"


async def test_remove_when_the_dir_is_already_gone(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "gone")
    shutil.rmtree(ws.path)
    assert await worktrees.remove(ws, delete_branch=False) is False
    assert ws.path not in listed(repo) and git(repo, "branch", "--list", "fleet/*") == ""


async def test_remove_never_deletes_the_users_checkout(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "evil")
    forged = worktrees.Workspace(repo=ws.repo, path=str(repo), branch=ws.branch, base=ws.base, rel=".")
    with pytest.raises(InvalidRequest, match="main checkout"):
        await worktrees.remove(forged, delete_branch=True)
    assert (repo / "README.md").exists() and (repo / ".git").is_dir()
    other = repo.parent / "elsewhere"
    git(repo.parent, "init", "-q", str(other))
    forged = worktrees.Workspace(repo=ws.repo, path=str(other), branch=ws.branch, base=ws.base, rel=".")
    with pytest.raises(InvalidRequest, match="main checkout"):
        await worktrees.remove(forged, delete_branch=True)
    assert (other / ".git").is_dir()


async def test_prune_removes_only_worktrees_of_agents_no_longer_live(repo: Path, home: Path, tmp_path: Path) -> None:
    live = await make(repo, home, "live")
    dead = await make(repo, home, "dead")
    write(Path(live.path), "wip.txt", "live agent's uncommitted work\n")
    gone = await make(repo, home, "gone")
    shutil.rmtree(gone.path)  # dir removed by hand: only its registration is stale
    junk = home / "worktrees" / "junk"
    junk.mkdir()
    (junk / "f").write_text("not a worktree\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("outside the fleet home\n")
    (home / "worktrees" / "link").symlink_to(victim)

    removed = await worktrees.prune(home, {"id-live"})

    assert sorted(removed) == sorted(str(home / "worktrees" / n) for n in ("id-dead", "junk", "link"))
    assert (Path(live.path) / "wip.txt").exists() and live.path in listed(repo)
    assert dead.path not in listed(repo) and gone.path not in listed(repo)
    assert not Path(dead.path).exists() and not junk.exists()
    assert (victim / "keep.txt").exists()  # a symlink is unlinked, never followed
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/fleet/").split()
    assert branches == ["fleet/dead", "fleet/gone", "fleet/live"]  # branches may hold unmerged work: kept
    assert await worktrees.prune(home, {"id-live"}) == []
    assert await worktrees.prune(tmp_path / "no-home", set()) == []


async def test_prune_when_the_users_repository_was_deleted(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "orphan")
    shutil.rmtree(repo)
    assert await worktrees.prune(home, set()) == [ws.path]
    assert not Path(ws.path).exists()


async def test_ensure_is_a_no_op_on_a_healthy_worktree(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "ok")
    write(Path(ws.path), "wip.txt", "x\n")
    assert await worktrees.ensure(ws) is False
    assert (Path(ws.path) / "wip.txt").exists()


async def test_ensure_remakes_a_deleted_worktree_from_its_branch(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo / "src"), home=home, agent_id="id-x", agent_name="x")
    write(Path(ws.path), "committed.txt", "kept on the branch\n")
    await worktrees.commit_turn(ws, "turn")
    shutil.rmtree(ws.path)
    assert await worktrees.ensure(ws) is True
    assert (Path(ws.path) / "committed.txt").read_text() == "kept on the branch\n"
    assert Path(ws.cwd).is_dir() and git(ws.path, "symbolic-ref", "HEAD") == "refs/heads/fleet/x"
    assert len([ln for ln in listed(repo).splitlines() if ln.startswith("worktree ")]) == 2
    assert await worktrees.ensure(ws) is False


async def test_ensure_reregisters_a_dir_whose_registration_was_pruned_keeping_its_files(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "x")
    write(Path(ws.path), "committed.txt", "c\n")
    await worktrees.commit_turn(ws, "turn")
    write(Path(ws.path), "wip.txt", "uncommitted work\n")
    shutil.rmtree(repo / ".git" / "worktrees" / "id-x")
    assert await worktrees.ensure(ws) is True
    assert (Path(ws.path) / "wip.txt").read_text() == "uncommitted work\n"
    assert git(ws.path, "status", "--porcelain") == "?? wip.txt"
    assert git(ws.path, "symbolic-ref", "HEAD") == "refs/heads/fleet/x"
    assert not Path(ws.path + ".reattach").exists()
    assert (await worktrees.changes(ws)).files == ("committed.txt", "wip.txt")


async def test_ensure_remakes_the_branch_from_the_base_when_it_was_deleted(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "x")
    shutil.rmtree(ws.path)
    git(repo, "worktree", "prune")
    git(repo, "branch", "-D", "fleet/x")
    assert await worktrees.ensure(ws) is True
    assert git(repo, "rev-parse", "fleet/x") == ws.base


async def test_remove_when_the_users_repository_was_deleted(repo: Path, home: Path) -> None:
    ws = await make(repo, home, "orphan")
    shutil.rmtree(repo)
    assert await worktrees.remove(ws, delete_branch=False) is False
    assert not Path(ws.path).exists()
