"""A git worktree per readwrite agent: its base, per-turn commits, changes, merge back, and clean-up.

Pure git (no store, no fleet). Every call runs ``git`` with hooks, signing, pagers and colour off, a fixed
author/committer, no prompt, the caller's ``GIT_*`` variables removed (a server started from a git hook must not aim
our calls at another repository) and literal pathspecs (a file an agent names ``:(exclude)*`` is a file name).
Lock contention between the worktrees of one repository (they share its object store, refs and ``.git/worktrees``)
is retried briefly, then reported as ``Conflict``.

The user's checkout is only ever read through a temporary index (``GIT_INDEX_FILE``: a copy of theirs, then
``add -A``), so taking a snapshot of "what the user sees" (HEAD + staged + unstaged + untracked, not ignored) changes
neither their index nor their files. ``merge`` decides everything in memory (``merge-tree`` on commits whose merge
base is the agent's base) before it writes a byte to the user's checkout. The merge itself lives in
``worktree_merge.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import structlog

from .errors import Conflict, InvalidRequest

log = structlog.get_logger("agent_fleet.worktrees")

BRANCH_PREFIX = "fleet/"
AGENT_EMAIL = "agent@agent-fleet.invalid"
LOCK_RETRY_S = 10.0  # how long a call keeps retrying while another git process holds a lock of the repository
MESSAGE_MAX = 72
_LOCKED = re.compile(r"\.lock'?:? File exists|Unable to create '[^']*\.lock'|could not lock config file")
_LOCK_FILE = re.compile(r"'([^']+\.lock)'|lock config file (\S+)")
_CONFIG = (
    "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "core.quotepath=off",
    "-c", "core.fsmonitor=false", "-c", "gc.auto=0", "-c", "color.ui=false", "-c", "core.pager=cat",
    "-c", "user.useConfigOnly=false", "-c", "advice.detachedHead=false",
)  # fmt: skip


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


class GitFailed(Conflict):
    """A git command failed for a reason other than a transient lock; carries what git said."""

    def __init__(self, args: Sequence[str], stderr: str, what: str) -> None:
        self.args_ = tuple(args)
        self.stderr = stderr.strip()
        super().__init__(f"{what}: git {' '.join(args[:3])} failed: {self.stderr[-600:] or 'no message'}")


# ---- running git -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Out:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "surrogateescape").strip()


def _env(name: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_EDITOR": "true", "GIT_PAGER": "cat",
        "GIT_LITERAL_PATHSPECS": "1", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "LANGUAGE": "",
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": AGENT_EMAIL,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": AGENT_EMAIL,
    })  # fmt: skip
    if extra:
        env.update(extra)
    return env


async def _git(
    args: Sequence[str],
    *,
    cwd: str | Path,
    ok: Collection[int] = (0,),
    stdin: bytes | None = None,
    index: str | None = None,
    name: str = "agent-fleet",
    what: str = "git",
) -> _Out:
    """Run one git command; retry while a lock of the repository is held; raise ``GitFailed`` on other failures
    (exit codes outside ``ok``). ``index``: a temporary index file (``GIT_INDEX_FILE``)."""
    argv = ["git", *_CONFIG, *args]
    env = _env(name, {"GIT_INDEX_FILE": index} if index else None)
    delay, start = 0.02, time.monotonic()
    while True:
        try:
            done = await anyio.run_process(argv, cwd=str(cwd), env=env, input=stdin, check=False)
        except FileNotFoundError as e:
            if not await anyio.Path(cwd).is_dir():
                raise InvalidRequest(f"{what}: the folder {cwd} does not exist") from e
            raise InvalidRequest(f"{what}: git is not installed (install git, or use isolation 'none')") from e
        err = done.stderr.decode("utf-8", "replace")
        if done.returncode in ok:
            return _Out(done.returncode, done.stdout, err)
        locked = _LOCKED.search(err)
        if locked:
            if time.monotonic() - start >= LOCK_RETRY_S:
                held = _LOCK_FILE.search(err)
                lock = (held.group(1) or held.group(2)) if held else "a .lock file in the repository's git dir"
                raise Conflict(
                    f"{what}: the git repository is busy: another git process has held {lock} for "
                    f"{time.monotonic() - start:.1f} s. Try again; if no git process is running, delete {lock}"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        raise GitFailed(args, err, what)


def _git_dir(top: str | Path) -> Path:
    """The git dir of the checkout at ``top`` (``.git`` itself, or where a linked worktree's ``.git`` file points)."""
    dot = Path(top) / ".git"
    if dot.is_file():
        line = dot.read_text(errors="replace").strip()
        if line.startswith("gitdir:"):
            gd = Path(line.removeprefix("gitdir:").strip())
            return gd if gd.is_absolute() else (Path(top) / gd).resolve()
    return dot


def _agent_name(ws: Workspace) -> str:
    return ws.branch.removeprefix(BRANCH_PREFIX) or "agent-fleet"


def _z(out: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


async def _snapshot(top: str, tmp: str, *, what: str) -> str:
    """The tree of the checkout at ``top`` as the user sees it (HEAD + staged + unstaged + untracked, not ignored),
    built in a copy of its index under ``tmp``: the checkout's own index and files are not touched. Returns the path
    of the temporary index (its tree is what ``write-tree`` would give)."""
    index = os.path.join(tmp, "index")
    src = _git_dir(top) / "index"
    with contextlib.suppress(FileNotFoundError):  # no commit and nothing staged yet: start from an empty index
        await anyio.to_thread.run_sync(shutil.copyfile, src, index)
    await _git(["add", "-A", "--", "."], cwd=top, index=index, what=what)
    return index


async def _tree_of(top: str, *, what: str) -> str:
    """The tree sha of ``top``'s current working state (see ``_snapshot``)."""
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await _snapshot(top, tmp, what=what)
        return (await _git(["write-tree"], cwd=top, index=index, what=what)).text


async def _rev(top: str, rev: str) -> str | None:
    out = await _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=top, ok=(0, 1))
    return out.text or None if out.rc == 0 else None


async def _numstat(top: str, args: Sequence[str], *, index: str | None = None) -> Changes:
    """``git diff --numstat`` summed: lines added, removed (binary files count 0) and the files, sorted."""
    out = await _git(["diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", *args],
                     cwd=top, index=index, what="counting changes")  # fmt: skip
    added = removed = 0
    files: list[str] = []
    for entry in _z(out.out):
        a, r, path = entry.split("\t", 2)
        added += int(a) if a.isdigit() else 0
        removed += int(r) if r.isdigit() else 0
        files.append(path)
    return Changes(added, removed, tuple(sorted(files)))


# ---- the public API ----------------------------------------------------------------------------------------------


async def repo_top(cwd: str) -> str | None:
    """The top level of the git checkout containing ``cwd`` (symlinks resolved), else None (not in a work tree:
    no repository, a bare one, inside ``.git``)."""
    if not await anyio.Path(cwd).is_dir():
        return None
    out = await _git(["rev-parse", "--show-toplevel"], cwd=cwd, ok=range(256), what="finding the git checkout")
    return await _real(out.text) if out.rc == 0 and out.text else None


async def create(*, cwd: str, home: Path, agent_id: str, agent_name: str, start_from: str | None = None) -> Workspace:
    """A worktree for one agent under ``<home>/worktrees/<agent_id>`` on a new branch ``fleet/<agent_name>``.

    ``start_from`` None: the base is a commit of the checkout's current state (HEAD + staged + unstaged + untracked,
    not ignored) made through a temporary index, parent HEAD (HEAD itself when nothing is uncommitted; no parent in a
    repository without commits). ``start_from`` a branch or sha (chained runs): the base is that commit. A branch of
    that name left over from an earlier agent of the same name is refused (``Conflict``)."""
    what = f"creating a worktree for agent {agent_name!r}"
    top = await repo_top(cwd)
    if top is None:
        raise InvalidRequest(
            f"{what}: {cwd} is not inside a git repository (use isolation 'none', or run `git init` there first)"
        )
    rel = Path(await _real(cwd)).relative_to(top).as_posix()
    branch = BRANCH_PREFIX + agent_name
    fmt = await _git(["check-ref-format", "--branch", branch], cwd=top, ok=range(256), what=what)
    if fmt.rc != 0 or not agent_name:
        raise InvalidRequest(f"{what}: {branch!r} is not a valid git branch name; rename the agent")
    if await _rev(top, f"refs/heads/{branch}") is not None:
        raise Conflict(
            f"{what}: the branch {branch} already exists (left by an earlier agent named {agent_name!r}): merge it "
            f"with merge_agent or delete it with delete_agent(purge=true), or `git branch -D {branch}` in {top}"
        )
    if start_from is not None:
        base = await _rev(top, start_from)
        if base is None:
            raise InvalidRequest(f"{what}: start_from {start_from!r} is not a branch or commit of {top}")
    else:
        base = await _base_commit(top, agent_name, what=what)
    path = Path(home) / "worktrees" / agent_id
    if await anyio.to_thread.run_sync(_occupied, path):
        raise Conflict(f"{what}: {path} already exists; run `agent-fleet doctor --repair` to prune stale worktrees")
    await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    await _git(["worktree", "add", "--quiet", "-b", branch, str(path), base], cwd=top, name=agent_name, what=what)
    ws = Workspace(repo=top, path=str(path), branch=branch, base=base, rel=rel)
    await anyio.Path(ws.cwd).mkdir(parents=True, exist_ok=True)  # an empty folder has no place in git: make it
    log.info("worktree_created", repo=top, path=ws.path, branch=branch, base=base)
    return ws


async def _base_commit(top: str, agent_name: str, *, what: str) -> str:
    """HEAD when the checkout has nothing uncommitted, else a commit of its working state with parent HEAD."""
    head = await _rev(top, "HEAD")
    tree = await _tree_of(top, what=what)
    if head is not None:
        head_tree = (await _git(["rev-parse", f"{head}^{{tree}}"], cwd=top, what=what)).text
        if head_tree == tree:
            return head
    parent = ["-p", head] if head else []
    msg = f"agent-fleet: the checkout as agent {agent_name} found it (uncommitted and untracked files included)"
    return (await _git(["commit-tree", tree, *parent, "-m", msg], cwd=top, name=agent_name, what=what)).text


async def ensure(ws: Workspace) -> bool:
    """Re-attach after a restart: True when the worktree had to be made again (the dir was gone or no longer
    registered), False when it is present and registered. The agent's uncommitted files in a dir that lost its
    registration are kept."""
    what = f"re-attaching the worktree of {ws.branch}"
    if await _registered(ws):
        return False
    await _git(["worktree", "prune"], cwd=ws.repo, what=what)
    path = Path(ws.path)
    tip = await _rev(ws.repo, f"refs/heads/{ws.branch}")
    if await anyio.to_thread.run_sync(_occupied, path):
        await _reregister(ws, tip, what=what)
    else:
        if tip is None:
            args = ["worktree", "add", "--quiet", "-b", ws.branch, ws.path, ws.base]
        else:
            args = ["worktree", "add", "--quiet", ws.path, ws.branch]
        await _git(args, cwd=ws.repo, name=_agent_name(ws), what=what)
    await anyio.Path(ws.cwd).mkdir(parents=True, exist_ok=True)
    log.info("worktree_reattached", path=ws.path, branch=ws.branch)
    return True


async def _registered(ws: Workspace) -> bool:
    if not await anyio.Path(ws.path, ".git").is_file():
        return False
    out = await _git(["rev-parse", "--show-toplevel", "--abbrev-ref", "HEAD"], cwd=ws.path, ok=range(256))
    lines = out.text.splitlines()
    return out.rc == 0 and len(lines) == 2 and await _real(lines[0]) == await _real(ws.path)


async def _reregister(ws: Workspace, tip: str | None, *, what: str) -> None:
    """A worktree dir with files but no registration: register a fresh one beside it (no checkout), move its
    ``.git`` link in, repair the link back and load the index from the branch without touching the files."""
    spare = Path(ws.path.rstrip("/") + ".reattach")
    dot = anyio.Path(ws.path, ".git")
    if await dot.is_dir() or await dot.is_symlink():
        raise Conflict(f"{what}: {ws.path} holds a .git that is not a worktree link; move it away and retry")
    await anyio.to_thread.run_sync(_delete, spare)
    branch = ["-b", ws.branch, str(spare), ws.base] if tip is None else [str(spare), ws.branch]
    await _git(["worktree", "add", "--quiet", "--no-checkout", *branch], cwd=ws.repo, what=what)
    await anyio.Path(spare, ".git").replace(dot)
    await anyio.to_thread.run_sync(_delete, spare)
    await _git(["worktree", "repair", ws.path], cwd=ws.repo, what=what)
    await _git(["reset", "--quiet", "--mixed"], cwd=ws.path, what=what)


async def commit_turn(ws: Workspace, message: str) -> str | None:
    """Commit everything in the worktree (``add -A``) on its branch; the commit's sha, or None when nothing changed.
    The message is the first line of ``message`` (clipped)."""
    what = f"committing the turn of {ws.branch}"
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "") or "agent turn"
    if len(first) > MESSAGE_MAX:
        first = first[: MESSAGE_MAX - 1] + "…"
    await _git(["add", "-A", "--", "."], cwd=ws.path, what=what)
    staged = await _git(["diff", "--cached", "--quiet", "--no-ext-diff"], cwd=ws.path, ok=(0, 1), what=what)
    if staged.rc == 0:
        return None
    await _git(["commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", first], cwd=ws.path,
               name=_agent_name(ws), what=what)  # fmt: skip
    return (await _git(["rev-parse", "HEAD"], cwd=ws.path, what=what)).text


async def changes(ws: Workspace) -> Changes:
    """base .. the worktree's working state (uncommitted work included), in two git calls."""
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await _snapshot(ws.path, tmp, what=f"reading the changes of {ws.branch}")
        return await _numstat(ws.path, ["--cached", ws.base], index=index)


async def diff(ws: Workspace) -> str:
    """Unified diff base .. the worktree's working state (plain text, no colour)."""
    what = f"reading the diff of {ws.branch}"
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await _snapshot(ws.path, tmp, what=what)
        out = await _git(["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", ws.base],
                         cwd=ws.path, index=index, what=what)  # fmt: skip
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
    """True when the branch (and the worktree's uncommitted work) holds nothing the checkout does not already have:
    every file the agent changed is, in the checkout's HEAD or working state, as the agent left it (a tree
    comparison, so a squash merge counts)."""
    from .worktree_merge import merged_already

    return await merged_already(ws)


async def remove(ws: Workspace, *, delete_branch: bool) -> bool:
    """Remove the worktree (force) and its registration; delete the branch when ``delete_branch`` or when it holds
    no unmerged work. Returns True when the branch was kept (it holds unmerged work). Uncommitted work in the
    worktree is committed to the branch first when the branch may be kept."""
    what = f"removing the worktree of {ws.branch}"
    keep = False
    if not delete_branch:
        if await _registered(ws):
            await commit_turn(ws, "uncommitted work when the agent was deleted")
        keep = await _rev(ws.repo, f"refs/heads/{ws.branch}") is not None and not await is_merged(ws)
    await _drop_worktree(ws.repo, Path(ws.path), what=what)
    if not keep and await _rev(ws.repo, f"refs/heads/{ws.branch}") is not None:
        await _git(["branch", "-D", "--", ws.branch], cwd=ws.repo, what=what)
    log.info("worktree_removed", path=ws.path, branch=ws.branch, branch_kept=keep)
    return keep


async def _drop_worktree(repo: str, path: Path, *, what: str) -> None:
    """Remove a linked worktree and its registration. Never the main checkout: only a dir whose ``.git`` is a file
    (a link) or that has no ``.git`` at all is deleted."""
    if await _real(path) == await _real(repo) or await anyio.Path(path, ".git").is_dir():
        raise InvalidRequest(f"{what}: {path} is a main checkout, not an agent's worktree; not removing it")
    if await anyio.Path(path, ".git").is_file() and not await anyio.Path(path).is_symlink():
        await _git(["worktree", "remove", "--force", "--force", str(path)], cwd=repo, ok=range(256), what=what)
    await anyio.to_thread.run_sync(_delete, path)
    if await anyio.Path(repo).is_dir():
        await _git(["worktree", "prune"], cwd=repo, what=what)


async def prune(home: Path, live_agent_ids: Collection[str]) -> list[str]:
    """Remove every worktree dir under ``<home>/worktrees`` whose agent id is not live, and its registration in its
    repository (found through its ``.git`` file). Returns the paths removed. Branches stay (they may hold unmerged
    work). Never touches a live agent's worktree."""
    live = set(live_agent_ids)
    removed: list[str] = []
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
        log.info("worktree_pruned", path=str(d), repo=repo)
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
        gitdir = _git_dir(d)
        common = gitdir / (gitdir / "commondir").read_text().strip() if (gitdir / "commondir").is_file() else None
    except OSError:
        return None
    if common is None or not common.resolve().is_dir():
        return None
    top = common.resolve().parent
    return str(top) if (top / ".git").exists() else None
