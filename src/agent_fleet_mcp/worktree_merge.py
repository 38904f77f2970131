"""Merging an agent's branch back into the user's checkout (``worktrees.merge``), and ``worktrees.is_merged``.

Everything is decided in memory before a byte of the user's checkout changes:

1. refuse a checkout git itself would refuse to merge into (detached HEAD, a merge, rebase, cherry-pick or revert in
   progress, unresolved index entries);
2. snapshot the user's working state through a temporary index (their index and files untouched) and make it a
   commit whose parent is the agent's base; ``merge-tree --write-tree`` of that commit and the agent's tip has
   exactly the agent's base as merge base (git 2.39 has no ``--merge-base``);
3. conflicts: what merge-tree reports, every file the user changed after the base (working state vs base) that the
   agent also changed (even when git could auto-merge it), and every such file with staged content that differs
   from its working file (``git add`` would lose it).

Only then is the checkout written, by git commands that are all-or-nothing: ``merge``: ``read-tree -m -u`` from
HEAD to the merge commit (it refuses, writing nothing, if a local change would be overwritten), then ``update-ref``
of the branch from the old HEAD (rolled back if the branch moved meanwhile). ``squash``: ``git apply`` of
base..tip to the working tree (atomic), then ``git add`` of exactly those files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anyio

from .errors import Conflict
from .worktree_git import GitFailed, git_dir, names, numstat, rev, run, snapshot, tree_of
from .worktrees import MergeResult, Workspace, admin, commit_turn

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_BUSY = {
    "MERGE_HEAD": "a merge is in progress (finish it with `git commit` or `git merge --abort`)",
    "rebase-merge": "a rebase is in progress (finish it with `git rebase --continue` or `git rebase --abort`)",
    "rebase-apply": "a rebase or `git am` is in progress (finish or abort it)",
    "CHERRY_PICK_HEAD": "a cherry-pick is in progress (finish it or `git cherry-pick --abort`)",
    "REVERT_HEAD": "a revert is in progress (finish it or `git revert --abort`)",
}


async def _checkout_state(repo: str, what: str) -> str | None:
    """HEAD's commit (None: no commit yet) after refusing a checkout that cannot take a merge."""
    if not await anyio.Path(repo).is_dir():
        raise Conflict(f"{what}: the checkout {repo} is gone; merge the branch by hand from another checkout")
    gd = await anyio.to_thread.run_sync(git_dir, repo)
    for name, why in _BUSY.items():
        if await anyio.Path(gd, name).exists():
            raise Conflict(f"{what}: refused, {why} in {repo}; then merge again")
    ref = await run(["symbolic-ref", "-q", "HEAD"], cwd=repo, ok=(0, 1), what=what)
    if ref.rc != 0:
        raise Conflict(
            f"{what}: refused, {repo} has a detached HEAD; check out the branch the changes should land on "
            "(`git switch <branch>`), then merge again"
        )
    unmerged = await run(["ls-files", "-u", "-z"], cwd=repo, what=what)
    if unmerged.out:
        raise Conflict(f"{what}: refused, {repo} has unresolved conflicts in its index; resolve them, then merge again")
    return await rev(repo, "HEAD")


async def _tip(ws: Workspace, *, dry_run: bool, what: str) -> str:
    """The agent's tip commit. A real merge commits pending worktree work first; a dry run only looks at it."""
    gitdir = await admin(ws)
    if gitdir is not None and not dry_run:
        await commit_turn(ws, "work not yet committed when merged")
    branch_tip = await rev(ws.repo, f"refs/heads/{ws.branch}")
    if branch_tip is None:
        raise Conflict(f"{what}: the branch {ws.branch} no longer exists in {ws.repo}; nothing to merge")
    if gitdir is not None and dry_run:
        tree = await tree_of(ws.path, what=what, gitdir=gitdir)
        if tree != (await run(["rev-parse", f"{branch_tip}^{{tree}}"], cwd=ws.repo, what=what)).text:
            msg = "uncommitted work (dry run)"
            return (await run(["commit-tree", tree, "-p", branch_tip, "-m", msg], cwd=ws.repo, what=what)).text
    return branch_tip


async def _user_state(
    repo: str, base: str, agent_files: Sequence[str], what: str
) -> tuple[str, str, set[str], set[str]]:
    """The user's working state as a commit on top of the agent's base, its tree, the files changed since the base,
    and the files whose staged content differs from the working file (in the user's real index). Ignored files the
    user has where the agent writes (the path or a parent of it) are part of that state: git's own checkout would
    overwrite them silently (``read-tree -m -u`` does)."""
    present = await anyio.to_thread.run_sync(_on_disk, repo, agent_files)
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await snapshot(repo, tmp, what=what)
        if present:
            await run(["add", "-A", "--force", "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=repo, index=index,
                      stdin=b"\0".join(p.encode("utf-8", "surrogateescape") for p in present), what=what)  # fmt: skip
        tree = (await run(["write-tree"], cwd=repo, index=index, what=what)).text
    msg = "agent-fleet: the checkout's working state (merge check)"
    commit = (await run(["commit-tree", tree, "-p", base, "-m", msg], cwd=repo, what=what)).text
    since_base = set(await names(repo, ["diff-tree", "-r", "--name-only", "-z", "--no-renames", base, tree]))
    staged = set(await names(repo, ["diff", "--name-only", "-z", "--no-renames", "--no-ext-diff"]))
    return commit, tree, since_base, staged


def _on_disk(repo: str, files: Sequence[str]) -> list[str]:
    """Of the paths the agent writes, those the checkout has on disk: the path itself, or a parent that is not a
    folder (a file or symlink where the agent needs a folder)."""
    found: set[str] = set()
    for f in files:
        parts = f.split("/")
        for i in range(1, len(parts) + 1):
            q = "/".join(parts[:i])
            p = Path(repo, q)
            if i == len(parts):
                if p.is_symlink() or p.exists():
                    found.add(q)
            elif p.is_symlink() or (p.exists() and not p.is_dir()):
                found.add(q)
                break
    return sorted(found)


async def _merge_tree(repo: str, ours: str, theirs: str, what: str) -> tuple[str | None, list[str]]:
    """(clean tree, []) or (None, conflicting files): ``git merge-tree --write-tree`` in memory."""
    out = await run(["merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", ours, theirs],
                    cwd=repo, ok=(0, 1), what=what)  # fmt: skip
    parts = [p.decode("utf-8", "surrogateescape") for p in out.out.split(b"\0")]
    if out.rc == 0:
        return parts[0], []
    return None, sorted({p for p in parts[1:] if p})


def _result(
    strategy: Literal["merge", "squash"], dry_run: bool, *, message: str, merged: bool = False,
    files: Sequence[str] = (), added: int = 0, removed: int = 0, conflicts: Sequence[str] = (),
    user_edits: Sequence[str] = (), commit: str | None = None,
) -> MergeResult:  # fmt: skip
    return MergeResult(
        merged=merged, dry_run=dry_run, strategy=strategy, files=tuple(files), added=added, removed=removed,
        conflicts=tuple(conflicts), user_edits=tuple(user_edits), commit=commit, message=message,
    )  # fmt: skip


async def merge_workspace(ws: Workspace, *, strategy: Literal["merge", "squash"], dry_run: bool) -> MergeResult:
    """See ``worktrees.merge``."""
    if strategy not in ("merge", "squash"):
        raise Conflict(f"unknown merge strategy {strategy!r}: use 'merge' or 'squash'")
    repo = ws.repo
    what = f"merging {ws.branch} into {repo}"
    head = await _checkout_state(repo, what)
    if strategy == "merge" and head is None:
        raise Conflict(f"{what}: refused, {repo} has no commit yet, so there is nothing to merge into; use "
                       "strategy='squash' (or make a first commit)")  # fmt: skip
    tip = await _tip(ws, dry_run=dry_run, what=what)
    added, removed, agent_files = await numstat(repo, [ws.base, tip])
    if not agent_files:
        return _result(strategy, dry_run, merged=not dry_run, message=f"nothing to merge: {ws.branch} changes no file")
    user_commit, user_tree, since_base, staged = await _user_state(repo, ws.base, agent_files, what)
    differ = set(await names(repo, ["diff-tree", "-r", "--name-only", "-z", "--no-renames", user_tree, tip]))
    pending = tuple(f for f in agent_files if f in differ)  # files the checkout does not have as the agent left them
    if not pending:
        return _result(strategy, dry_run, merged=not dry_run, message=f"nothing to merge: {repo} already has it")
    if pending != agent_files:
        added, removed, agent_files = await numstat(repo, [ws.base, tip, "--", *pending])
    uncommitted = set(await names(repo, ["diff-tree", "-r", "--name-only", "-z", "--no-renames",
                                         head or EMPTY_TREE, user_commit]))  # fmt: skip
    _, git_conflicts = await _merge_tree(repo, user_commit, tip, what)
    touched = set(agent_files) & (since_base | staged)
    conflicts = sorted(set(git_conflicts) | touched)
    if conflicts:
        user_edits = sorted(set(conflicts) & ((since_base & uncommitted) | staged))
        return _conflict(ws, strategy, dry_run, conflicts, user_edits, added, removed)
    if strategy == "merge":
        assert head is not None
        return await _merge_commit(ws, head, tip, dry_run=dry_run, what=what)
    return await _squash(ws, tip, agent_files, added, removed, dry_run=dry_run, what=what)


def _conflict(
    ws: Workspace, strategy: Literal["merge", "squash"], dry_run: bool, conflicts: list[str], user_edits: list[str],
    added: int, removed: int,
) -> MergeResult:  # fmt: skip
    shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
    mine = f"; your uncommitted edits to {len(user_edits)} of them are kept as they are" if user_edits else ""
    message = (
        f"conflict: {ws.branch} and your checkout both changed {shown} since the agent started{mine}. Nothing was "
        f"changed in {ws.repo}. "
        + ("Commit or undo your edits to those files, or have the agent redo its change on top of yours, then merge "
           "again" if user_edits else
           "Have a new agent (it starts from your checkout as it is now) redo the change, or resolve it by hand "
           f"with `git merge {ws.branch}`")
    )  # fmt: skip
    return _result(strategy, dry_run, files=tuple(conflicts), conflicts=tuple(conflicts), user_edits=tuple(user_edits),
                   added=added, removed=removed, message=message)  # fmt: skip


async def _merge_commit(ws: Workspace, head: str, tip: str, *, dry_run: bool, what: str) -> MergeResult:
    """A merge commit (parents HEAD and tip) holding only the agent's changes, checked out into the user's tree."""
    repo = ws.repo
    ancestor = await run(["merge-base", "--is-ancestor", ws.base, head], cwd=repo, ok=(0, 1), what=what)
    if ancestor.rc != 0 and not await _base_edits_in_head(repo, ws.base, head, what):
        raise Conflict(
            f"{what}: refused, the agent started from your uncommitted edits, and a merge commit would commit them "
            "too; use strategy='squash' (the changes land uncommitted in your working tree), or commit your edits "
            "first"
        )
    tree, git_conflicts = await _merge_tree(repo, head, tip, what)
    if tree is None:
        return _conflict(ws, "merge", dry_run, git_conflicts, [], 0, 0)
    added, removed, files = await numstat(repo, [head, tree])
    stat = f"+{added} -{removed}, {len(files)} file{'' if len(files) == 1 else 's'}"
    if not files:
        return _result("merge", dry_run, merged=not dry_run, message=f"nothing to merge: {repo} already has it")
    if dry_run:
        return _result("merge", True, files=files, added=added, removed=removed,
                       message=f"dry run: {ws.branch} merges cleanly ({stat}); nothing was changed")  # fmt: skip
    msg = f"Merge {ws.branch} (agent-fleet): {stat}"
    name = ws.branch.removeprefix("fleet/")
    commit = (await run(["commit-tree", tree, "-p", head, "-p", tip, "-m", msg], cwd=repo, name=name, what=what)).text
    await run(["update-index", "-q", "--refresh"], cwd=repo, ok=(0, 1), what=what)
    try:
        await run(["read-tree", "-m", "-u", head, commit], cwd=repo, what=what)
    except GitFailed as e:
        return _result("merge", False, files=files, added=added, removed=removed,
                       message=f"not merged: {_first(e.stderr)}; nothing was changed in {repo}. Commit or undo your "
                       "local changes to those files, then merge again")  # fmt: skip
    try:
        await run(["update-ref", "-m", f"merge {ws.branch} (agent-fleet)", "HEAD", commit, head], cwd=repo, what=what)
    except GitFailed:
        await run(["read-tree", "-m", "-u", commit, head], cwd=repo, what=what)
        raise Conflict(f"{what}: your branch moved while merging; nothing was merged. Merge again") from None
    await run(["update-ref", "ORIG_HEAD", head], cwd=repo, what=what)
    return _result("merge", False, merged=True, files=files, added=added, removed=removed, commit=commit,
                   message=f"merged {ws.branch} into your branch ({stat}) as {commit[:12]}; undo with "
                   "`git reset --merge ORIG_HEAD`")  # fmt: skip


async def _base_edits_in_head(repo: str, base: str, head: str, what: str) -> bool:
    """Are the uncommitted edits the base was made of (base vs its parent) all in HEAD already?"""
    parent = await rev(repo, f"{base}^")
    snap = await names(repo, ["diff-tree", "-r", "--name-only", "-z", "--no-renames", parent or EMPTY_TREE, base])
    differ = set(await names(repo, ["diff-tree", "-r", "--name-only", "-z", "--no-renames", head, base]))
    return not (set(snap) & differ)


async def _squash(
    ws: Workspace, tip: str, files: tuple[str, ...], added: int, removed: int, *, dry_run: bool, what: str
) -> MergeResult:
    """base..tip applied to the user's working tree and index, uncommitted."""
    repo = ws.repo
    stat = f"+{added} -{removed}, {len(files)} file{'' if len(files) == 1 else 's'}"
    if dry_run:
        return _result("squash", True, files=files, added=added, removed=removed,
                       message=f"dry run: {ws.branch} applies cleanly ({stat}); nothing was changed")  # fmt: skip
    patch = await run(["diff", "--binary", "--full-index", "--no-renames", "--no-ext-diff", "--no-textconv",
                       "--no-color", ws.base, tip, "--", *files], cwd=repo, what=what)  # fmt: skip
    try:
        await run(["apply", "--whitespace=nowarn", "-"], cwd=repo, stdin=patch.out, what=what)
    except GitFailed as e:
        return _result("squash", False, files=files, added=added, removed=removed,
                       message=f"not merged: {_first(e.stderr)}; nothing was changed in {repo}. Move the file "
                       "aside, then merge again")  # fmt: skip
    await run(["add", "-A", "--force", "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=repo,
              stdin=b"\0".join(f.encode("utf-8", "surrogateescape") for f in files), what=what)  # fmt: skip
    return _result("squash", False, merged=True, files=files, added=added, removed=removed,
                   message=f"applied {ws.branch} to your working tree and index, uncommitted ({stat}); review and "
                   "commit them")  # fmt: skip


def _first(stderr: str) -> str:
    lines = [ln.removeprefix("error: ").strip() for ln in stderr.splitlines() if ln.strip()]
    return "; ".join(lines[:3])[:300] or "git refused"


async def merged_already(ws: Workspace, *, use_worktree: bool = True) -> bool:
    """See ``worktrees.is_merged``. ``use_worktree=False``: the branch alone (its worktree is not to be trusted)."""
    what = f"checking whether {ws.branch} is merged"
    gitdir = await admin(ws) if use_worktree else None
    if gitdir is not None:
        tip_tree = await tree_of(ws.path, what=what, gitdir=gitdir)
    else:
        branch_tip = await rev(ws.repo, f"refs/heads/{ws.branch}")
        if branch_tip is None:
            return True
        tip_tree = (await run(["rev-parse", f"{branch_tip}^{{tree}}"], cwd=ws.repo, what=what)).text
    diff_names = ["diff-tree", "-r", "--name-only", "-z", "--no-renames"]
    agent = set(await names(ws.repo, [*diff_names, ws.base, tip_tree]))
    if not agent:
        return True
    head = await rev(ws.repo, "HEAD")
    return not set(await names(ws.repo, [*diff_names, head or EMPTY_TREE, tip_tree])) & agent
