"""worktrees.commit_turn / changes / diff: one commit per turn on the agent's branch, and what changed since the base
(committed or not, untracked files included) without reading transcripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp import worktrees

from .conftest import git, write

pytestmark = pytest.mark.anyio


async def test_one_commit_per_turn_with_the_prompts_first_line(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="builder")
    assert await worktrees.commit_turn(ws, "nothing done") is None
    write(Path(ws.path), "src/app.py", "rewritten\n")
    write(Path(ws.path), "new/file.txt", "untracked by the agent\n")
    sha = await worktrees.commit_turn(ws, "\n  # Fix the parser  \nsecond line is not in the subject\n")
    assert sha is not None and sha == git(repo, "rev-parse", "fleet/builder")
    assert git(repo, "log", "-1", "--format=%s|%an|%ae", sha) == "# Fix the parser|builder|agent@agent-fleet.invalid"
    assert git(repo, "rev-parse", f"{sha}^") == ws.base
    assert git(ws.path, "status", "--porcelain") == ""
    assert await worktrees.commit_turn(ws, "again") is None
    (Path(ws.path) / "README.md").unlink()
    sha2 = await worktrees.commit_turn(ws, "x" * 200)
    subject = git(repo, "log", "-1", "--format=%s", "fleet/builder")
    assert sha2 and len(subject) == worktrees.MESSAGE_MAX and subject.endswith("…")
    assert git(repo, "rev-list", "--count", f"{ws.base}..fleet/builder") == "2"
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout saw none of it


async def test_commit_turn_ignores_hooks_and_works_without_user_identity(repo: Path, home: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho hooked > /dev/stderr\nexit 1\n")
    hook.chmod(0o755)
    git(repo, "config", "commit.gpgsign", "true")  # would fail: no key
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    write(Path(ws.path), "a.txt", "a\n")
    assert await worktrees.commit_turn(ws, "turn") is not None


async def test_changes_count_committed_and_uncommitted_work_against_the_base(repo: Path, home: Path) -> None:
    write(repo, "src/app.py", "".join(f"line {i}\n" for i in range(1, 21)) + "user's uncommitted line\n")
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    assert await worktrees.changes(ws) == worktrees.Changes(0, 0, ())
    assert worktrees.Changes(0, 0, ()).summary() == ""
    wt = Path(ws.path)
    lines = (wt / "src/app.py").read_text().splitlines(keepends=True)
    lines[0] = "LINE 1\n"
    lines[1] = "LINE 2\n"
    (wt / "src/app.py").write_text("".join(lines))
    await worktrees.commit_turn(ws, "turn 1")
    write(wt, "docs/new.md", "one\ntwo\nthree\n")  # untracked, not committed yet
    (wt / "README.md").unlink()
    write(wt, "build.log", "ignored\n")
    ch = await worktrees.changes(ws)
    assert ch == worktrees.Changes(added=5, removed=3, files=("README.md", "docs/new.md", "src/app.py"))
    assert ch.summary() == "+5 -3, 3 files"
    assert worktrees.Changes(1, 0, ("a",)).summary() == "+1 -0, 1 file"
    assert git(ws.path, "diff", "--cached", "--name-only") == ""  # reading changes staged nothing in the worktree
    assert "?? docs/new.md" in git(ws.path, "status", "--porcelain", "--untracked-files=all")
    d = await worktrees.diff(ws)
    assert "-line 1\n-line 2\n+LINE 1\n+LINE 2\n" in d and "+three\n" in d and "deleted file mode" in d
    assert "user's uncommitted line" not in d  # the user's edit is part of the base, not the agent's change
    assert "\x1b[" not in d and "build.log" not in d


async def test_changes_names_every_odd_file_name_literally(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    names = [":(exclude)*", "-rf", "ünïcode é.txt", "tab\tname", 'quote"d', "*"]
    for n in names:
        write(Path(ws.path), n, "x\n")
    ch = await worktrees.changes(ws)
    assert ch.files == tuple(sorted(names)) and ch.added == len(names)
    await worktrees.commit_turn(ws, "odd names")
    assert (await worktrees.changes(ws)).files == tuple(sorted(names))


async def test_binary_files_count_as_changed_with_no_lines(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    (Path(ws.path) / "blob.bin").write_bytes(bytes(range(256)) * 4)
    assert await worktrees.changes(ws) == worktrees.Changes(0, 0, ("blob.bin",))
    assert "Binary files" in await worktrees.diff(ws)


async def test_concurrent_commits_of_one_worktree_make_one_commit(repo: Path, home: Path) -> None:
    import anyio

    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    write(Path(ws.path), "x.txt", "x\n")
    shas: list[str | None] = []

    async def one() -> None:
        shas.append(await worktrees.commit_turn(ws, "turn"))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    made = [s for s in shas if s]
    assert len(made) == 1 and git(repo, "rev-list", "--count", f"{ws.base}..fleet/b") == "1"
