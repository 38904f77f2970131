"""Isolation is resolved at creation: a worktree for a readwrite agent in a git checkout (started from what the
user sees, uncommitted and untracked files included), none for a readonly agent or outside a repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.fleet import Fleet

from .conftest import branches, finish, git, worktree_list, write

pytestmark = pytest.mark.anyio


async def test_a_readwrite_agent_works_in_its_own_worktree_from_what_the_user_sees(fleet: Fleet, repo: Path) -> None:
    write(repo, "src/app.py", "edited by the user, not committed\n")
    write(repo, "notes.txt", "untracked\n")
    write(repo, "debug.log", "ignored\n")
    git(repo, "add", "notes.txt")
    git(repo, "reset", "-q", "notes.txt")  # untracked again; the user's index is as it was
    status_before = git(repo, "status", "--porcelain")
    res = await fleet.create_agent(name="w1", template="editor", cwd=str(repo / "src"), prompt="append new.py x = 1")
    ws = res.agent.workspace
    assert ws is not None and res.agent.spec.isolation is None and res.warnings == ()
    assert ws.branch == "fleet/w1" and ws.rel == "src" and ws.repo == str(repo.resolve())
    assert Path(ws.path) == fleet.settings.home / "worktrees" / res.agent.id
    assert res.agent.cwd == ws.cwd == str(Path(ws.path) / "src") and res.agent.origin_cwd == str(repo.resolve() / "src")
    assert res.agent.spec.cwd == str((repo / "src").resolve())  # the spec keeps the cwd it was given
    wt = Path(ws.path)
    assert (wt / "src/app.py").read_text() == "edited by the user, not committed\n"
    assert (wt / "notes.txt").read_text() == "untracked\n" and not (wt / "debug.log").exists()
    await finish(fleet, "w1")
    assert (wt / "src/new.py").read_text() == "x = 1\n" and not (repo / "src/new.py").exists()
    assert git(repo, "status", "--porcelain") == status_before  # the user's checkout is untouched
    assert str(wt) in worktree_list(repo) and "fleet/w1" in branches(repo)


async def test_a_readonly_agent_never_gets_a_worktree(fleet: Fleet, repo: Path) -> None:
    res = await fleet.create_agent(name="r1", template="reader", cwd=str(repo))
    assert res.agent.workspace is None and res.agent.cwd == str(repo.resolve()) and res.warnings == ()
    asked = await fleet.create_agent(name="r2", template="reader", cwd=str(repo), isolation="worktree")
    assert asked.agent.workspace is None and any("readonly" in w for w in asked.warnings)
    assert worktree_list(repo) == [str(repo.resolve())] and branches(repo) == ["main"]


async def test_isolation_none_edits_the_checkout_in_place(fleet: Fleet, repo: Path) -> None:
    res = await fleet.create_agent(name="inplace", template="editor", cwd=str(repo), isolation="none",
                                   prompt="append here.txt hi")  # fmt: skip
    assert res.agent.workspace is None and res.agent.cwd == str(repo.resolve())
    await finish(fleet, "inplace")
    assert (repo / "here.txt").read_text() == "hi\n" and worktree_list(repo) == [str(repo.resolve())]


async def test_outside_a_repository_the_agent_edits_in_place_with_a_note(fleet: Fleet, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    res = await fleet.create_agent(name="p1", template="editor", cwd=str(plain))
    assert res.agent.workspace is None and res.agent.cwd == str(plain.resolve())
    assert res.warnings == (f"not a git repository: the agent edits {plain.resolve()} in place",)
    with pytest.raises(InvalidRequest, match=r"needs a git repository.*git init"):
        await fleet.create_agent(name="p2", template="editor", cwd=str(plain), isolation="worktree")
    assert await fleet.store.get_agent("p2") is None  # nothing was created


async def test_without_git_installed_a_readwrite_agent_still_edits_a_plain_folder(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No folder above the cwd holds a .git, so no git is needed to know it is not a repository (it refused with
    "git is not installed" before)."""
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    res = await fleet.create_agent(name="p1", template="editor", cwd=str(plain))
    assert res.agent.workspace is None and res.agent.cwd == str(plain.resolve())
    assert res.warnings == (f"not a git repository: the agent edits {plain.resolve()} in place",)


async def test_a_retried_create_returns_the_same_agent_and_worktree(fleet: Fleet, repo: Path) -> None:
    first = await fleet.create_agent(name="same", template="editor", cwd=str(repo), idempotency_key="k1")
    again = await fleet.create_agent(name="same", template="editor", cwd=str(repo), idempotency_key="k1")
    assert (
        again.created is False and again.agent.id == first.agent.id and again.agent.workspace == first.agent.workspace
    )
    assert len(worktree_list(repo)) == 2
