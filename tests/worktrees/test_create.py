"""worktrees.create / repo_top: the base is what the user sees (uncommitted and untracked, not ignored) and taking it
touches neither the user's index nor their files; branch and path rules; chained starts; non-git folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from agent_fleet_mcp import worktree_git, worktrees
from agent_fleet_mcp.errors import Conflict, InvalidRequest

from .conftest import fingerprint, git, write

pytestmark = pytest.mark.anyio


async def test_repo_top_finds_the_checkout_and_none_outside(repo: Path, tmp_path: Path) -> None:
    assert await worktrees.repo_top(str(repo / "src")) == str(repo.resolve())
    plain = tmp_path / "plain"
    plain.mkdir()
    assert await worktrees.repo_top(str(plain)) is None
    assert await worktrees.repo_top(str(repo / ".git")) is None  # inside the git dir: no work tree
    assert await worktrees.repo_top(str(tmp_path / "missing")) is None


async def test_repo_top_starts_no_git_where_no_folder_above_holds_a_dot_git(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git finds a checkout through a ``.git`` in the folder or one above (it runs with no GIT_* variables): with
    none, the answer is known without starting git (~5-40 ms a create, and git need not be installed)."""
    started: list[str] = []
    real_run = worktrees.run

    async def counting(args: list[str], **kw: object) -> worktree_git.Out:
        started.append(" ".join(args))
        return await real_run(args, **kw)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(worktrees, "run", counting)
    plain = tmp_path / "plain" / "deep"
    plain.mkdir(parents=True)
    assert await worktrees.repo_top(str(plain)) is None
    assert started == []
    assert await worktrees.repo_top(str(repo / "src")) == str(repo.resolve())
    assert started == ["rev-parse --show-toplevel"]
    (plain / ".git").write_text("gitdir: /nowhere\n")  # a .git file (a worktree's) that leads nowhere: git decides
    assert await worktrees.repo_top(str(plain)) is None
    assert len(started) == 2


async def test_lookups_of_one_folder_at_the_same_time_share_one_git_run(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch creates its runs side by side, often in one cwd: one `git rev-parse` answers them all."""
    started: list[str] = []
    real_run = worktrees.run
    release = anyio.Event()

    async def held(args: list[str], **kw: object) -> worktree_git.Out:
        started.append(str(kw.get("cwd")))
        await release.wait()  # still running when the other lookups arrive
        return await real_run(args, **kw)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(worktrees, "run", held)
    tops: list[str | None] = []

    async def look(cwd: Path) -> None:
        tops.append(await worktrees.repo_top(str(cwd)))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(look, repo / "src")
        tg.start_soon(look, repo)  # another folder: its own run
        await anyio.wait_all_tasks_blocked()  # all 11 have begun (an asker still in its .git look is held after)
        release.set()
    assert tops == [str(repo.resolve())] * 11
    assert sorted(started) == sorted([str(repo / "src"), str(repo)])
    assert await worktrees.repo_top(str(repo / "src")) == str(repo.resolve())  # later: asked again, not cached
    assert len(started) == 3


async def test_a_cancelled_lookup_leaves_the_others_waiting_on_it_to_ask_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first asker's client gives up half-way: those waiting on its answer must not take "no repository"."""
    real_run = worktrees.run
    runs = 0
    entered, release = anyio.Event(), anyio.Event()

    async def held(args: list[str], **kw: object) -> worktree_git.Out:
        nonlocal runs
        runs += 1
        entered.set()
        await release.wait()
        return await real_run(args, **kw)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(worktrees, "run", held)
    tops: list[str | None] = []

    async def look() -> None:
        tops.append(await worktrees.repo_top(str(repo)))

    asker = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancelled_lookup, asker, repo)
        await entered.wait()  # the asker is in its git run
        tg.start_soon(look)
        tg.start_soon(look)
        await anyio.wait_all_tasks_blocked()  # the two others wait on it
        assert runs == 1
        release.set()
        asker.cancel()  # before it resumes: it never answers
    assert tops == [str(repo.resolve())] * 2 and runs == 2


async def _cancelled_lookup(scope: anyio.CancelScope, repo: Path) -> None:
    with scope:
        await worktrees.repo_top(str(repo))
        raise AssertionError("the lookup was to be cancelled")


async def test_non_git_cwd_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidRequest, match=r"not inside a git repository.*isolation 'none'"):
        await worktrees.create(cwd=str(plain), home=home, agent_id="a1", agent_name="builder")
    assert not (home / "worktrees" / "a1").exists()


async def test_clean_checkout_starts_from_head(repo: Path, home: Path) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="builder")
    assert ws.base == git(repo, "rev-parse", "HEAD")
    assert ws.path == str(home / "worktrees" / "a1")
    assert ws.branch == "fleet/builder" and ws.rel == "." and ws.cwd == ws.path
    assert ws.repo == str(repo.resolve())
    assert (Path(ws.path) / "src" / "app.py").read_text() == (repo / "src" / "app.py").read_text()
    assert git(repo, "rev-parse", "fleet/builder") == ws.base
    assert str(Path(ws.path)) in git(repo, "worktree", "list")
    assert git(ws.path, "status", "--porcelain") == ""


async def test_base_holds_uncommitted_and_untracked_but_not_ignored_and_touches_nothing(repo: Path, home: Path) -> None:
    write(repo, "src/app.py", "changed but not staged\n")
    write(repo, "staged.txt", "staged\n")
    git(repo, "add", "staged.txt")
    write(repo, "staged.txt", "staged, then edited again\n")  # working content wins over the staged one
    write(repo, "notes/new.md", "untracked\n")
    write(repo, "debug.log", "ignored\n")
    (repo / "README.md").unlink()
    head = git(repo, "rev-parse", "HEAD")
    before = fingerprint(repo)
    index_bytes = (repo / ".git" / "index").read_bytes()

    ws = await worktrees.create(cwd=str(repo / "src"), home=home, agent_id="a1", agent_name="b")

    assert fingerprint(repo) == before
    assert (repo / ".git" / "index").read_bytes() == index_bytes  # not even a stat refresh
    assert ws.base != head and git(repo, "rev-parse", f"{ws.base}^") == head
    wt = Path(ws.path)
    assert (wt / "src/app.py").read_text() == "changed but not staged\n"
    assert (wt / "staged.txt").read_text() == "staged, then edited again\n"
    assert (wt / "notes/new.md").read_text() == "untracked\n"
    assert not (wt / "debug.log").exists() and not (wt / "README.md").exists()
    assert ws.rel == "src" and ws.cwd == str(wt / "src")
    assert git(ws.path, "status", "--porcelain") == ""  # the agent starts clean: its base is what it sees


async def test_tracked_files_that_match_gitignore_stay_in_the_base(repo: Path, home: Path) -> None:
    write(repo, "keep.log", "tracked though ignored\n")
    git(repo, "add", "-f", "keep.log")
    git(repo, "commit", "-q", "-m", "force-added")
    write(repo, "keep.log", "edited\n")
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    assert (Path(ws.path) / "keep.log").read_text() == "edited\n"


async def test_repository_without_commits(tmp_path: Path, home: Path) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    write(r, "a.txt", "hello\n")
    ws = await worktrees.create(cwd=str(r), home=home, agent_id="a1", agent_name="b")
    assert git(r, "rev-list", "--count", ws.base) == "1"  # a root commit holding the untracked file
    assert (Path(ws.path) / "a.txt").read_text() == "hello\n"
    assert git(r, "status", "--porcelain") == "?? a.txt"


async def test_empty_cwd_folder_exists_in_the_worktree(repo: Path, home: Path) -> None:
    (repo / "empty" / "deeper").mkdir(parents=True)
    ws = await worktrees.create(cwd=str(repo / "empty" / "deeper"), home=home, agent_id="a1", agent_name="b")
    assert ws.rel == "empty/deeper" and Path(ws.cwd).is_dir()


async def test_leftover_branch_of_the_same_name_is_refused_with_the_way_out(repo: Path, home: Path) -> None:
    git(repo, "branch", "fleet/builder")
    with pytest.raises(Conflict, match=r"fleet/builder already exists.*merge_agent.*purge"):
        await worktrees.create(cwd=str(repo), home=home, agent_id="a2", agent_name="builder")
    assert not (home / "worktrees" / "a2").exists()


@pytest.mark.parametrize("name", ["bad..name", "a b", "x/", "x.lock", "a~1", ""])
async def test_names_git_cannot_take_are_refused(repo: Path, home: Path, name: str) -> None:
    with pytest.raises(InvalidRequest, match="not a valid git branch name"):
        await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name=name)
    assert git(repo, "branch", "--list", "fleet/*") == ""


async def test_start_from_a_branch_chains_runs(repo: Path, home: Path) -> None:
    first = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="first")
    write(Path(first.path), "src/app.py", "first's version\n")
    sha = await worktrees.commit_turn(first, "edit app")
    second = await worktrees.create(cwd=str(repo), home=home, agent_id="a2", agent_name="second",
                                    start_from=first.branch)  # fmt: skip
    assert second.base == sha
    assert (Path(second.path) / "src/app.py").read_text() == "first's version\n"
    with pytest.raises(InvalidRequest, match="start_from 'nope' is not a branch or commit"):
        await worktrees.create(cwd=str(repo), home=home, agent_id="a3", agent_name="third", start_from="nope")
    with pytest.raises(InvalidRequest, match="is not a branch or commit"):
        await worktrees.create(cwd=str(repo), home=home, agent_id="a3", agent_name="third", start_from="--all")


async def test_git_env_of_the_caller_cannot_aim_calls_at_another_repository(
    repo: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    assert ws.repo == str(repo.resolve())
    assert git(other, "branch", "--list") == ""


async def test_parallel_creations_and_commits_on_one_repository(repo: Path, home: Path) -> None:
    write(repo, "dirty.txt", "uncommitted\n")
    made: dict[str, worktrees.Workspace] = {}

    async def one(i: int) -> None:
        ws = await worktrees.create(cwd=str(repo), home=home, agent_id=f"a{i}", agent_name=f"w{i}")
        write(Path(ws.path), f"out/{i}.txt", f"{i}\n")
        assert await worktrees.commit_turn(ws, f"turn {i}") is not None
        made[ws.branch] = ws

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert len(made) == 6
    bases = {ws.base for ws in made.values()}
    assert len({git(repo, "rev-parse", f"{b}^{{tree}}") for b in bases}) == 1  # all saw the same state
    for i in range(6):
        assert git(repo, "show", f"fleet/w{i}:out/{i}.txt") == str(i)


async def test_a_lock_held_briefly_is_waited_out_and_a_stuck_one_is_a_conflict(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    write(Path(ws.path), "x.txt", "x\n")
    lock = Path(git(ws.path, "rev-parse", "--absolute-git-dir")) / "index.lock"
    lock.write_text("")

    async def release() -> None:
        await anyio.sleep(0.3)
        lock.unlink()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        assert await worktrees.commit_turn(ws, "after the lock") is not None
    monkeypatch.setattr(worktree_git, "LOCK_RETRY_S", 0.2)
    lock.write_text("")
    write(Path(ws.path), "y.txt", "y\n")
    with pytest.raises(Conflict, match=r"busy.*index\.lock"):
        await worktrees.commit_turn(ws, "stuck")
    lock.unlink()
    assert await worktrees.commit_turn(ws, "after all") is not None


async def test_base_snapshot_leaves_the_index_file_byte_identical_even_when_stale(repo: Path, home: Path) -> None:
    # a file touched without a content change makes git want to refresh the index: we must not do it for the user
    p = repo / "README.md"
    st = p.stat()
    import os

    os.utime(p, (st.st_atime + 5, st.st_mtime + 5))
    digest = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    await worktrees.create(cwd=str(repo), home=home, agent_id="a1", agent_name="b")
    assert hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("agent_id", ["../escape", "a/b", "..", "", ".hidden"])
async def test_agent_ids_that_leave_the_worktrees_folder_are_refused(repo: Path, home: Path, agent_id: str) -> None:
    with pytest.raises(InvalidRequest, match="cannot name a folder"):
        await worktrees.create(cwd=str(repo), home=home, agent_id=agent_id, agent_name="b")
    assert git(repo, "branch", "--list", "fleet/*") == "" and not (home / "escape").exists()


def test_two_servers_creating_and_removing_worktrees_of_one_repository_at_once(repo: Path, home: Path) -> None:
    # two event loops in two threads: no in-process lock is shared, as with two servers on one repository
    import threading

    errors: list[BaseException] = []

    def server(tag: str) -> None:
        async def work() -> None:
            for round_ in range(3):
                made: list[worktrees.Workspace] = []
                for i in range(3):
                    made.append(
                        await worktrees.create(
                            cwd=str(repo), home=home, agent_id=f"{tag}{round_}{i}", agent_name=f"{tag}-{round_}-{i}"
                        )
                    )
                for ws in made:
                    write(Path(ws.path), "x.txt", f"{ws.branch}\n")
                    assert await worktrees.commit_turn(ws, "turn") is not None
                    assert await worktrees.remove(ws, delete_branch=True) is False

        try:
            anyio.run(work)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=server, args=(t,)) for t in ("p", "q")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--list", "fleet/*") == ""
