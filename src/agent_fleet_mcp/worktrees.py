"""A git worktree per readwrite agent: its base, per-turn commits, changes, merge back, and clean-up.

Pure git (no store, no fleet); git runs through ``worktree_git.run`` (safe fixed configuration, lock contention
retried briefly, then ``Conflict``).

The user's checkout is only ever read through a temporary index (``GIT_INDEX_FILE``: a copy of theirs, then
``add -A``), so taking a snapshot of "what the user sees" (HEAD + staged + unstaged + untracked, not ignored) changes
neither their index nor their files. ``merge`` decides everything in memory (``merge-tree`` on commits whose merge
base is the agent's base) before it writes a byte to the user's checkout. The merge itself lives in
``worktree_merge.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import structlog
from anyio.lowlevel import RunVar

from . import worktree_git
from .errors import Conflict, InvalidRequest
from .worktree_git import SCANNED, GitFailed, forget, git_dir, numstat, rev, run, snapshot, tree_of, worktree_admin

__all__ = [
    "Changes", "GitFailed", "MergeResult", "Workspace", "changes", "commit_turn", "create", "diff", "ensure",
    "is_merged", "merge", "prune", "remove", "repo_top",
]  # fmt: skip

log = structlog.get_logger("agent_fleet.worktrees")

BRANCH_PREFIX = "fleet/"
MESSAGE_MAX = 72
STALE_LOCK_S = 30.0  # a lock of the agent's own worktree this old is left by a killed turn (see _clear_stale_locks)
_MOVED = re.compile(r"but expected|already exists")  # update-ref's compare-and-swap lost a race
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Workspace:
    """What the store keeps per isolated agent (JSON-serialisable: all str)."""

    repo: str  # top level of the user's checkout the agent came from (where merges land)
    path: str  # the worktree's top level: <fleet home>/worktrees/<agent_id>
    branch: str  # fleet/<agent name>
    base: str  # sha of the commit the agent started from
    rel: str  # the agent's cwd relative to the top level: "." or "src/pkg"

    @property
    def cwd(self) -> str:
        """The worktree path joined with ``rel``: where the agent runs."""
        return self.path if self.rel in ("", ".") else os.path.join(self.path, self.rel)


@dataclass(frozen=True)
class Changes:
    """base .. current working state of the worktree (committed or not)."""

    added: int
    removed: int
    files: tuple[str, ...]  # paths relative to the repo top level, sorted

    def summary(self) -> str:
        """``"+12 -3, 2 files"`` (``""`` when no files)."""
        if not self.files:
            return ""
        n = len(self.files)
        return f"+{self.added} -{self.removed}, {n} file{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class MergeResult:
    merged: bool  # False on conflict or dry run
    dry_run: bool
    strategy: Literal["merge", "squash"]
    files: tuple[str, ...]  # changed files (clean) or conflicting files (conflict)
    added: int
    removed: int
    conflicts: tuple[str, ...]  # conflicting files (empty when clean)
    user_edits: tuple[str, ...]  # of those, files with the user's uncommitted edits made after the agent's base
    commit: str | None  # the merge commit made in the user's checkout, if any
    message: str  # one line: what happened, or why not and what to do


def _agent_name(ws: Workspace) -> str:
    return ws.branch.removeprefix(BRANCH_PREFIX) or "agent-fleet"


async def repo_top(cwd: str) -> str | None:
    """The top level of the git checkout containing ``cwd`` (symlinks resolved), else None (not in a work tree:
    no repository, a bare one, inside ``.git``). Where neither ``cwd`` nor a folder above it holds a ``.git``, git
    would find nothing (git runs with no ``GIT_*`` variables): None without starting it. Callers asking about the
    same folder at the same time share one answer (a batch's runs are created side by side, often in one cwd)."""
    try:
        pending = _REPO_TOP.get()
    except LookupError:
        pending: dict[str, _Lookup] = {}
        _REPO_TOP.set(pending)
    while (shared := pending.get(cwd)) is not None:
        await shared.done.wait()
        if shared.answered:
            return shared.top
        # its asker was cancelled or failed: ask again (an error that persists is then this caller's to raise)
    pending[cwd] = shared = _Lookup(anyio.Event())
    try:
        shared.top = await _repo_top(cwd)
        shared.answered = True
    finally:
        del pending[cwd]
        shared.done.set()
    return shared.top


@dataclass
class _Lookup:
    done: anyio.Event
    top: str | None = None
    answered: bool = False


_REPO_TOP: RunVar[dict[str, _Lookup]] = RunVar("agent_fleet_repo_top")


async def _repo_top(cwd: str) -> str | None:
    if not await anyio.to_thread.run_sync(_may_be_in_a_checkout, cwd):
        return None
    out = await run(["rev-parse", "--show-toplevel"], cwd=cwd, ok=range(256), what="finding the git checkout")
    return await _real(out.text) if out.rc == 0 and out.text else None


def _may_be_in_a_checkout(cwd: str) -> bool:
    """``cwd`` is a folder, and it or a folder above it has an entry named ``.git`` (a folder, or a worktree's
    file)."""
    here = Path(os.path.abspath(cwd))
    return here.is_dir() and any(os.path.lexists(d / ".git") for d in (here, *here.parents))


async def create(*, cwd: str, home: Path, agent_id: str, agent_name: str, start_from: str | None = None) -> Workspace:
    """A worktree for one agent under ``<home>/worktrees/<agent_id>`` on a new branch ``fleet/<agent_name>``.

    ``start_from`` None: the base is a commit of the checkout's current state (HEAD + staged + unstaged + untracked,
    not ignored) made through a temporary index, parent HEAD (HEAD itself when nothing is uncommitted; no parent in a
    repository without commits). ``start_from`` a branch or sha (chained runs): the base is that commit. A branch of
    that name left over from an earlier agent of the same name is refused (``Conflict``)."""
    what = f"creating a worktree for agent {agent_name!r}"
    if not _ID.match(agent_id):
        raise InvalidRequest(f"{what}: agent id {agent_id!r} cannot name a folder (letters, digits, '_', '-', '.')")
    top = await repo_top(cwd)
    if top is None:
        raise InvalidRequest(
            f"{what}: {cwd} is not inside a git repository (use isolation 'none', or run `git init` there first)"
        )
    rel = Path(await _real(cwd)).relative_to(top).as_posix()
    branch = BRANCH_PREFIX + agent_name
    fmt = await run(["check-ref-format", "--branch", branch], cwd=top, ok=range(256), what=what)
    if fmt.rc != 0 or not agent_name:
        raise InvalidRequest(f"{what}: {branch!r} is not a valid git branch name; rename the agent")
    if await rev(top, f"refs/heads/{branch}") is not None:
        raise Conflict(
            f"{what}: the branch {branch} already exists (left by an earlier agent named {agent_name!r}): merge it "
            f"with merge_agent or delete it with delete_agent(purge=true), or `git branch -D {branch}` in {top}"
        )
    if start_from is not None:
        base = await rev(top, start_from)
        if base is None:
            raise InvalidRequest(f"{what}: start_from {start_from!r} is not a branch or commit of {top}")
    else:
        base = await _base_commit(top, agent_name, what=what)
    path = Path(home) / "worktrees" / agent_id
    if await anyio.to_thread.run_sync(_occupied, path):
        raise Conflict(f"{what}: {path} already exists; run `agent-fleet doctor --repair` to prune stale worktrees")
    await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    await _add(top, ["-b", branch, str(path), base], branch=branch, base=base, path=path, name=agent_name, what=what)
    ws = Workspace(repo=top, path=str(path), branch=branch, base=base, rel=rel)
    await anyio.Path(ws.cwd).mkdir(parents=True, exist_ok=True)  # an empty folder has no place in git: make it
    log.info("worktree_created", repo=top, path=ws.path, branch=branch, base=base)
    return ws


async def _add(repo: str, args: list[str], *, branch: str | None, base: str, path: Path, name: str, what: str) -> None:
    """``git worktree add``, tried again while another process's worktree entry is half-written (git fails reading
    it: ``failed to read .git/worktrees/<x>/commondir``), after undoing what the failed try made (its new branch,
    its folder)."""
    deadline = time.monotonic() + worktree_git.LOCK_RETRY_S
    while True:
        try:
            await run(["worktree", "add", "--quiet", *args], cwd=repo, name=name, what=what)
            return
        except GitFailed as e:
            if not SCANNED.search(e.stderr) or time.monotonic() > deadline:
                raise
        if branch is not None and await rev(repo, f"refs/heads/{branch}") == base:
            await run(["update-ref", "-d", f"refs/heads/{branch}", base], cwd=repo, what=what)
        if await anyio.Path(path, ".git").exists() or await anyio.Path(path).exists():
            await _drop_worktree(repo, path, what=what)
        await anyio.sleep(0.05)


async def _base_commit(top: str, agent_name: str, *, what: str) -> str:
    """HEAD when the checkout has nothing uncommitted, else a commit of its working state with parent HEAD."""
    head = await rev(top, "HEAD")
    tree = await tree_of(top, what=what)
    if head is not None:
        head_tree = (await run(["rev-parse", f"{head}^{{tree}}"], cwd=top, what=what)).text
        if head_tree == tree:
            return head
    parent = ["-p", head] if head else []
    msg = f"agent-fleet: the checkout as agent {agent_name} found it (uncommitted and untracked files included)"
    return (await run(["commit-tree", tree, *parent, "-m", msg], cwd=top, name=agent_name, what=what)).text


async def ensure(ws: Workspace) -> bool:
    """Re-attach after a restart: True when the worktree had to be made again (the dir was gone or no longer
    registered), False when it is present and registered. The agent's uncommitted files in a dir that lost its
    registration are kept."""
    what = f"re-attaching the worktree of {ws.branch}"
    if await is_registered(ws):
        return False
    await anyio.to_thread.run_sync(forget, ws.repo, ws.path)
    path = Path(ws.path)
    tip = await rev(ws.repo, f"refs/heads/{ws.branch}")
    if await anyio.to_thread.run_sync(_occupied, path):
        await _reregister(ws, tip, what=what)
    else:
        args = ["-b", ws.branch, ws.path, ws.base] if tip is None else [ws.path, ws.branch]
        new = ws.branch if tip is None else None
        await _add(ws.repo, args, branch=new, base=ws.base, path=path, name=_agent_name(ws), what=what)
    await anyio.Path(ws.cwd).mkdir(parents=True, exist_ok=True)
    log.info("worktree_reattached", path=ws.path, branch=ws.branch)
    return True


async def is_registered(ws: Workspace) -> bool:
    """Is the worktree dir there and registered in its repository? Raises ``Conflict`` when it is registered but its
    ``.git`` link file no longer points to its registration (changed from inside the worktree)."""
    return await admin(ws) is not None


async def admin(ws: Workspace) -> Path | None:
    """The worktree's git dir as the repository registered it (None: not registered). Every git call inside a
    worktree names it explicitly (``--git-dir``), so a ``.git`` file an agent rewrote cannot aim our commits at the
    user's checkout or another agent's; a changed link is refused outright."""
    found, intact = await anyio.to_thread.run_sync(worktree_admin, ws.path, ws.repo)
    if found is not None and not intact:
        raise Conflict(
            f"the worktree {ws.path} no longer links to its registration in {ws.repo} (its .git file was changed "
            f"from inside it): not running git there. Restore it with `git worktree repair {ws.path}` in {ws.repo}"
        )
    return found


async def _must_admin(ws: Workspace, what: str) -> Path:
    found = await admin(ws)
    if found is None:
        raise Conflict(f"{what}: the worktree {ws.path} is missing or not registered; re-attach it (ensure) first")
    return found


async def _reregister(ws: Workspace, tip: str | None, *, what: str) -> None:
    """A worktree dir with files but no registration: register a fresh one beside it (no checkout), move its
    ``.git`` link in, repair the link back and load the index from the branch without touching the files."""
    spare = Path(ws.path.rstrip("/") + ".reattach")
    dot = anyio.Path(ws.path, ".git")
    if await dot.is_dir() or await dot.is_symlink():
        raise Conflict(f"{what}: {ws.path} holds a .git that is not a worktree link; move it away and retry")
    await anyio.to_thread.run_sync(_delete, spare)
    branch = ["-b", ws.branch, str(spare), ws.base] if tip is None else [str(spare), ws.branch]
    await run(["worktree", "add", "--quiet", "--no-checkout", *branch], cwd=ws.repo, what=what)
    await anyio.Path(spare, ".git").replace(dot)
    await anyio.to_thread.run_sync(_delete, spare)
    await run(["worktree", "repair", ws.path], cwd=ws.repo, what=what)
    await run(["reset", "--quiet", "--mixed"], cwd=ws.path, gitdir=await _must_admin(ws, what), what=what)


async def commit_turn(ws: Workspace, message: str) -> str | None:
    """Commit everything in the worktree (``add -A``) on its branch; the commit's sha, or None when nothing changed.
    The message is the first line of ``message`` (clipped). The commit goes on ``refs/heads/<branch>`` by name
    (compare-and-swap), whatever the worktree's HEAD was switched to: never on another branch."""
    what = f"committing the turn of {ws.branch}"
    gitdir = await _must_admin(ws, what)
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "") or "agent turn"
    if len(first) > MESSAGE_MAX:
        first = first[: MESSAGE_MAX - 1] + "…"
    ref = f"refs/heads/{ws.branch}"
    await anyio.to_thread.run_sync(_clear_stale_locks, gitdir, ref)
    await run(["add", "-A", "--", "."], cwd=ws.path, gitdir=gitdir, what=what)
    tree = (await run(["write-tree"], cwd=ws.path, gitdir=gitdir, what=what)).text
    for attempt in range(3):  # another commit of this branch (a merge committing pending work) may land first
        tip = await rev(ws.repo, ref)
        parent = tip or ws.base
        if (await run(["rev-parse", f"{parent}^{{tree}}"], cwd=ws.repo, what=what)).text == tree:
            return None
        sha = (await run(["commit-tree", tree, "-p", parent, "-m", first], cwd=ws.repo, name=_agent_name(ws),
                         what=what)).text  # fmt: skip
        try:
            await run(["update-ref", "-m", f"agent-fleet: {first}", ref, sha, tip or ""], cwd=ws.repo, what=what)
        except GitFailed as e:
            if attempt == 2 or not _MOVED.search(e.stderr):
                raise
            continue
        return sha
    return None  # not reached


def _clear_stale_locks(gitdir: Path, ref: str) -> None:
    """A turn killed while its agent ran git leaves ``index.lock`` (in the worktree's git dir) or the branch's ref
    lock behind, and every later commit of the agent would wait, then fail. Only the agent's own git uses those two
    locks, and a turn's process group is gone when its commit runs: a lock older than ``STALE_LOCK_S`` is deleted."""
    common = gitdir.parent.parent  # <common dir>/worktrees/<id>
    for lock in (gitdir / "index.lock", common / f"{ref}.lock"):
        try:
            if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
                lock.unlink()
                log.warning("stale_git_lock_removed", lock=str(lock))
        except FileNotFoundError:
            continue


async def changes(ws: Workspace) -> Changes:
    """base .. the worktree's working state (uncommitted work included), in two git calls."""
    what = f"reading the changes of {ws.branch}"
    gitdir = await _must_admin(ws, what)
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await snapshot(ws.path, tmp, what=what, gitdir=gitdir)
        return Changes(*await numstat(ws.path, ["--cached", ws.base], index=index, gitdir=gitdir))


async def diff(ws: Workspace) -> str:
    """Unified diff base .. the worktree's working state (plain text, no colour)."""
    what = f"reading the diff of {ws.branch}"
    gitdir = await _must_admin(ws, what)
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await snapshot(ws.path, tmp, what=what, gitdir=gitdir)
        out = await run(["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", ws.base],
                        cwd=ws.path, index=index, gitdir=gitdir, what=what)  # fmt: skip
    return out.out.decode("utf-8", "replace")


async def merge(ws: Workspace, *, strategy: Literal["merge", "squash"], dry_run: bool) -> MergeResult:
    """Apply base..tip (tip: the branch after committing pending work) to the checkout at ``ws.repo``.

    The conflict check runs first, in memory; a conflict changes nothing in the checkout (HEAD, index, files, stash,
    no MERGE_HEAD, no lock left). The user's uncommitted edits made after the base to files the agent also changed
    are conflicts, never overwritten; their unrelated uncommitted edits stay as they are. ``merge``: a merge commit
    on the current branch (parents HEAD and tip) holding only the agent's changes; refused when the agent's base
    holds uncommitted user edits a merge commit would commit. ``squash``: the changes applied to the working tree and
    index, uncommitted. A detached HEAD or a merge/rebase in progress is refused."""
    from .worktree_merge import merge_workspace

    return await merge_workspace(ws, strategy=strategy, dry_run=dry_run)


async def is_merged(ws: Workspace) -> bool:
    """True when the branch (and the worktree's uncommitted work) holds nothing the checkout's HEAD does not already
    have: every file the agent changed is, in HEAD, as the agent left it (a tree comparison: a squash merge the user
    committed counts, whatever the ancestry). A squash not yet committed does not count: the user may still throw
    it away, and the branch is the only other copy."""
    from .worktree_merge import merged_already

    return await merged_already(ws)


async def remove(ws: Workspace, *, delete_branch: bool) -> bool:
    """Remove the worktree (force) and its registration; delete the branch when ``delete_branch`` or when it holds
    no unmerged work. Returns True when the branch was kept (it holds unmerged work). Uncommitted work in the
    worktree is committed to the branch first when the branch may be kept."""
    what = f"removing the worktree of {ws.branch}"
    if not await anyio.Path(ws.repo).is_dir():  # the repository itself is gone, and its branch with it
        await anyio.to_thread.run_sync(_delete, Path(ws.path))
        return False
    keep = False
    if not delete_branch:
        try:
            registered = await is_registered(ws)
        except Conflict:  # its .git link was changed from inside: commit nothing from it
            registered = False
        if registered:
            await commit_turn(ws, "uncommitted work when the agent was deleted")
        if await rev(ws.repo, f"refs/heads/{ws.branch}") is not None:
            from .worktree_merge import merged_already

            keep = not await merged_already(ws, use_worktree=registered)
    await _drop_worktree(ws.repo, Path(ws.path), what=what)
    if not keep and await rev(ws.repo, f"refs/heads/{ws.branch}") is not None:
        await run(["branch", "-D", "--", ws.branch], cwd=ws.repo, what=what)
    log.info("worktree_removed", path=ws.path, branch=ws.branch, branch_kept=keep)
    return keep


async def _drop_worktree(repo: str, path: Path, *, what: str) -> None:
    """Remove a linked worktree and its registration. Never the main checkout: only a dir whose ``.git`` is a file
    (a link) or that has no ``.git`` at all is deleted."""
    if await _real(path) == await _real(repo) or await anyio.Path(path, ".git").is_dir():
        raise InvalidRequest(f"{what}: {path} is a main checkout, not an agent's worktree; not removing it")
    if await anyio.Path(path, ".git").is_file() and not await anyio.Path(path).is_symlink():
        await run(["worktree", "remove", "--force", "--force", str(path)], cwd=repo, ok=range(256), what=what)
    await anyio.to_thread.run_sync(_delete, path)
    await anyio.to_thread.run_sync(forget, repo, path)


async def prune(home: Path, live_agent_ids: Collection[str]) -> list[str]:
    """Remove every worktree dir under ``<home>/worktrees`` whose agent id is not live, and its registration in its
    repository (found through its ``.git`` file). Returns the paths removed. Branches stay (they may hold unmerged
    work). Never touches a live agent's worktree."""
    live = set(live_agent_ids)
    removed: list[str] = []
    repos: set[str] = set()
    for d in await anyio.to_thread.run_sync(_entries, Path(home) / "worktrees"):
        if d.name in live or d.name.removesuffix(".reattach") in live:
            continue
        repo = await anyio.to_thread.run_sync(_repo_of, d)
        what = f"pruning the stale worktree {d}"
        if repo is not None:
            await _drop_worktree(repo, d, what=what)
        else:
            await anyio.to_thread.run_sync(_delete, d)
        removed.append(str(d))
        if repo:
            repos.add(repo)
        log.info("worktree_pruned", path=str(d), repo=repo)
    for repo in sorted(repos):  # entries of worktree folders deleted by hand before
        await anyio.to_thread.run_sync(lambda r=repo: forget(r, Path(home) / "worktrees", under=True))
    return removed


async def _real(path: str | Path) -> str:
    return str(await anyio.Path(path).resolve())


def _entries(root: Path) -> list[Path]:
    return sorted(root.iterdir()) if root.is_dir() else []


def _occupied(path: Path) -> bool:
    return path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir())))


def _delete(path: Path) -> None:
    """Delete a file, a symlink (not what it points to) or a folder tree; gone already is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _repo_of(d: Path) -> str | None:
    """The top level of the main checkout a linked worktree dir belongs to (``.git`` file -> gitdir -> commondir)."""
    if d.is_symlink() or not (d / ".git").is_file():
        return None
    try:
        gitdir = git_dir(d)
        common = gitdir / (gitdir / "commondir").read_text().strip() if (gitdir / "commondir").is_file() else None
    except OSError:
        return None
    if common is None or not common.resolve().is_dir():
        return None
    top = common.resolve().parent
    return str(top) if (top / ".git").exists() else None
