"""worktrees.merge / is_merged: clean merges (merge commit, squash), conflicts that change nothing in the user's
checkout, the user's uncommitted edits never overwritten, dry runs, and the states a merge refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp import worktrees
from agent_fleet_mcp.errors import Conflict

from .conftest import fingerprint, git, write

pytestmark = pytest.mark.anyio
APP = "".join(f"line {i}\n" for i in range(1, 21))


def edit_line(root: Path, n: int, text: str, rel: str = "src/app.py") -> None:
    p = root / rel
    lines = p.read_text().splitlines(keepends=True)
    lines[n - 1] = text + "\n"
    p.write_text("".join(lines))


async def agent(repo: Path, home: Path, name: str = "builder") -> worktrees.Workspace:
    return await worktrees.create(cwd=str(repo), home=home, agent_id=f"id-{name}", agent_name=name)


async def test_clean_merge_commit_holds_only_the_agents_changes(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 2, "agent line 2")
    write(Path(ws.path), "docs/new.md", "new\n")  # left uncommitted: the merge commits it first
    await worktrees.commit_turn(ws, "turn 1")
    write(Path(ws.path), "docs/later.md", "later\n")
    write(repo, "mine.txt", "user's untracked file\n")
    write(repo, "README.md", "# user's staged edit\n")
    git(repo, "add", "README.md")
    write(repo, "README.md", "# user's uncommitted edit\n")
    head = git(repo, "rev-parse", "HEAD")
    assert not await worktrees.is_merged(ws)

    res = await worktrees.merge(ws, strategy="merge", dry_run=False)

    assert res.merged and not res.conflicts and res.commit is not None
    assert res.commit == git(repo, "rev-parse", "HEAD")
    assert res.files == ("docs/later.md", "docs/new.md", "src/app.py") and (res.added, res.removed) == (3, 1)
    assert git(repo, "rev-parse", f"{res.commit}^1") == head
    assert git(repo, "rev-parse", f"{res.commit}^2") == git(repo, "rev-parse", "fleet/builder")
    assert git(repo, "diff", "--name-only", head, res.commit).splitlines() == list(res.files)
    assert (repo / "src/app.py").read_text().splitlines()[1] == "agent line 2"
    assert (repo / "docs/later.md").read_text() == "later\n"
    status = git(repo, "status", "--porcelain").splitlines()
    assert sorted(status) == ["?? mine.txt", "MM README.md"]  # the user's own edits stay uncommitted and untouched
    assert (repo / "README.md").read_text() == "# user's uncommitted edit\n"
    assert git(repo, "show", ":README.md") == "# user's staged edit"
    assert git(repo, "log", "-1", "--format=%an", "HEAD") == "builder"
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert fingerprint(repo)["leftovers"] == ["ORIG_HEAD"]
    assert await worktrees.is_merged(ws)
    again = await worktrees.merge(ws, strategy="merge", dry_run=False)
    assert again.merged and again.commit is None and "nothing to merge" in again.message


async def test_clean_squash_lands_uncommitted_in_tree_and_index(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 3, "agent line 3")
    (Path(ws.path) / "README.md").unlink()
    write(Path(ws.path), "bin/tool.sh", "#!/bin/sh\n")
    (Path(ws.path) / "bin/tool.sh").chmod(0o755)
    await worktrees.commit_turn(ws, "turn")
    write(repo, "mine.txt", "user's\n")
    head = git(repo, "rev-parse", "HEAD")

    res = await worktrees.merge(ws, strategy="squash", dry_run=False)

    assert res.merged and res.commit is None and res.files == ("README.md", "bin/tool.sh", "src/app.py")
    assert git(repo, "rev-parse", "HEAD") == head
    assert sorted(git(repo, "status", "--porcelain").splitlines()) == [
        "?? mine.txt", "A  bin/tool.sh", "D  README.md", "M  src/app.py",
    ]  # fmt: skip
    assert (repo / "bin/tool.sh").stat().st_mode & 0o111
    assert not await worktrees.is_merged(ws)  # applied, not committed: the branch is still the only safe copy
    git(repo, "commit", "-q", "-m", "the user commits the squash")
    assert await worktrees.is_merged(ws)


async def test_conflict_changes_nothing_in_the_checkout(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 5, "agent's line 5")
    await worktrees.commit_turn(ws, "agent turn")
    edit_line(repo, 5, "user's committed line 5")
    git(repo, "commit", "-q", "-am", "user commit")
    write(repo, "other.txt", "untracked\n")
    write(repo, "README.md", "# unrelated uncommitted edit\n")
    git(repo, "add", "README.md")
    before = fingerprint(repo)
    for strategy in ("merge", "squash"):
        for dry_run in (True, False):
            res = await worktrees.merge(ws, strategy=strategy, dry_run=dry_run)
            assert not res.merged and res.conflicts == ("src/app.py",) and res.files == ("src/app.py",)
            assert res.user_edits == () and res.commit is None
            assert "conflict" in res.message and "Nothing was changed" in res.message
            assert fingerprint(repo) == before


async def test_users_uncommitted_edit_to_a_file_the_agent_changed_is_a_conflict_even_if_mergeable(
    repo: Path, home: Path
) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 2, "agent line 2")
    await worktrees.commit_turn(ws, "agent turn")
    edit_line(repo, 19, "user's uncommitted line 19")  # git alone would merge these two
    before = fingerprint(repo)
    for strategy in ("merge", "squash"):
        res = await worktrees.merge(ws, strategy=strategy, dry_run=False)
        assert not res.merged and res.conflicts == ("src/app.py",) and res.user_edits == ("src/app.py",)
        assert "uncommitted edits" in res.message
        assert fingerprint(repo) == before
    assert (repo / "src/app.py").read_text().splitlines()[18] == "user's uncommitted line 19"
    assert not await worktrees.is_merged(ws)


async def test_users_new_untracked_file_where_the_agent_adds_one_is_a_conflict(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), "new.py", "agent's\n")
    write(repo, "new.py", "user's\n")
    before = fingerprint(repo)
    res = await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert res.conflicts == ("new.py",) and res.user_edits == ("new.py",)
    assert fingerprint(repo) == before


async def test_staged_content_differing_from_the_file_is_not_lost(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 1, "agent line 1")
    edit_line(repo, 20, "staged only")
    git(repo, "add", "src/app.py")
    (repo / "src/app.py").write_text(APP)  # working file as at the base; the index holds another version
    before = fingerprint(repo)
    res = await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert res.conflicts == ("src/app.py",) and not res.merged
    assert fingerprint(repo) == before


async def test_dry_run_reports_without_changing_anything(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    edit_line(Path(ws.path), 2, "agent line 2")  # uncommitted in the worktree: a dry run commits nothing
    before = fingerprint(repo)
    tip = git(repo, "rev-parse", "fleet/builder")
    for strategy in ("merge", "squash"):
        res = await worktrees.merge(ws, strategy=strategy, dry_run=True)
        assert not res.merged and res.dry_run and res.files == ("src/app.py",) and (res.added, res.removed) == (1, 1)
        assert "dry run" in res.message and res.commit is None
    assert fingerprint(repo) == before
    assert git(repo, "rev-parse", "fleet/builder") == tip
    assert git(ws.path, "status", "--porcelain") == " M src/app.py"


async def test_merge_commit_refused_when_the_base_holds_uncommitted_user_edits(repo: Path, home: Path) -> None:
    write(repo, "README.md", "# user's edit, never committed\n")
    ws = await agent(repo, home)
    write(Path(ws.path), "agent.txt", "agent\n")
    before = fingerprint(repo)
    with pytest.raises(Conflict, match=r"uncommitted edits.*strategy='squash'"):
        await worktrees.merge(ws, strategy="merge", dry_run=False)
    assert fingerprint(repo) == before
    res = await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert res.merged and res.files == ("agent.txt",)
    assert (repo / "README.md").read_text() == "# user's edit, never committed\n"
    assert sorted(git(repo, "status", "--porcelain").splitlines()) == [" M README.md", "A  agent.txt"]


async def test_merge_commit_allowed_once_the_user_committed_those_edits(repo: Path, home: Path) -> None:
    write(repo, "README.md", "# user's edit\n")
    ws = await agent(repo, home)
    write(Path(ws.path), "agent.txt", "agent\n")
    git(repo, "commit", "-q", "-am", "user commits the edit")
    res = await worktrees.merge(ws, strategy="merge", dry_run=False)
    assert res.merged and res.files == ("agent.txt",) and git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("state", ["detached", "merging", "rebasing", "unresolved"])
async def test_refused_states_change_nothing(repo: Path, home: Path, state: str) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), "agent.txt", "agent\n")
    if state == "detached":
        git(repo, "checkout", "-q", "--detach")
    elif state == "merging":
        git(repo, "checkout", "-q", "-b", "side")
        edit_line(repo, 1, "side")
        git(repo, "commit", "-q", "-am", "side")
        git(repo, "checkout", "-q", "main")
        edit_line(repo, 1, "main")
        git(repo, "commit", "-q", "-am", "main")
        git(repo, "merge", "side", check=False)
    elif state == "rebasing":
        (repo / ".git" / "rebase-merge").mkdir()
    else:
        git(repo, "checkout", "-q", "-b", "side")
        edit_line(repo, 1, "side")
        git(repo, "commit", "-q", "-am", "side")
        git(repo, "checkout", "-q", "main")
        edit_line(repo, 1, "main")
        git(repo, "commit", "-q", "-am", "main")
        git(repo, "merge", "side", check=False)
        (repo / ".git" / "MERGE_HEAD").unlink()
    before = fingerprint(repo)
    with pytest.raises(Conflict, match="refused"):
        await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert fingerprint(repo) == before


async def test_two_agents_same_file_first_merges_second_conflicts(repo: Path, home: Path) -> None:
    a = await agent(repo, home, "a")
    b = await agent(repo, home, "b")
    edit_line(Path(a.path), 4, "a's line 4")
    edit_line(Path(b.path), 16, "b's line 16")
    first = await worktrees.merge(a, strategy="merge", dry_run=False)
    assert first.merged
    before = fingerprint(repo)
    second = await worktrees.merge(b, strategy="merge", dry_run=False)
    assert not second.merged and second.conflicts == ("src/app.py",) and second.user_edits == ()
    assert fingerprint(repo) == before


async def test_is_merged_after_a_plain_git_merge_by_the_user(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), "x.txt", "x\n")
    await worktrees.commit_turn(ws, "x")
    assert not await worktrees.is_merged(ws)
    git(repo, "merge", "-q", "--squash", "fleet/builder")
    git(repo, "commit", "-q", "-m", "squashed by hand")
    assert await worktrees.is_merged(ws)
    write(Path(ws.path), "y.txt", "uncommitted in the worktree\n")
    assert not await worktrees.is_merged(ws)


async def test_squash_twice_and_partial_application(repo: Path, home: Path) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), "a.txt", "a\n")
    write(Path(ws.path), "b.txt", "b\n")
    write(repo, "a.txt", "a\n")  # the user already made the same file by hand
    res = await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert res.merged and res.files == ("b.txt",) and not res.conflicts
    again = await worktrees.merge(ws, strategy="squash", dry_run=False)
    assert again.merged and again.files == () and "nothing to merge" in again.message


async def test_merge_into_a_checkout_that_is_itself_a_linked_worktree(repo: Path, home: Path, tmp_path: Path) -> None:
    user_wt = tmp_path / "user-worktree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(user_wt))
    ws = await worktrees.create(cwd=str(user_wt), home=home, agent_id="a1", agent_name="b")
    assert ws.repo == str(user_wt.resolve())
    write(Path(ws.path), "x.txt", "x\n")
    res = await worktrees.merge(ws, strategy="merge", dry_run=False)
    assert res.merged and git(user_wt, "show", "feature:x.txt") == "x"
    assert git(repo, "rev-parse", "main") != git(user_wt, "rev-parse", "feature")
    assert await worktrees.remove(ws, delete_branch=False) is False
    assert "fleet/b" not in git(repo, "branch", "--list")


@pytest.mark.parametrize("strategy", ["merge", "squash"])
async def test_the_users_ignored_file_is_never_overwritten(repo: Path, home: Path, strategy: str) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), ".gitignore", "")  # the agent un-ignores *.log ...
    write(Path(ws.path), "secrets.log", "agent's\n")  # ... and adds a file the user has, ignored, with other content
    write(repo, "secrets.log", "the user's own, ignored\n")
    before = fingerprint(repo)
    res = await worktrees.merge(ws, strategy="merge" if strategy == "merge" else "squash", dry_run=False)
    assert not res.merged and res.conflicts == ("secrets.log",) and res.user_edits == ("secrets.log",)
    assert fingerprint(repo) == before


@pytest.mark.parametrize("strategy", ["merge", "squash"])
async def test_the_users_ignored_file_where_the_agent_needs_a_folder_is_never_replaced(
    repo: Path, home: Path, strategy: str
) -> None:
    ws = await agent(repo, home)
    write(Path(ws.path), ".gitignore", "")
    write(Path(ws.path), "cache.log/entry.txt", "agent's\n")
    write(repo, "cache.log", "the user's ignored file\n")
    before = fingerprint(repo)
    res = await worktrees.merge(ws, strategy="merge" if strategy == "merge" else "squash", dry_run=False)
    assert not res.merged and fingerprint(repo) == before
