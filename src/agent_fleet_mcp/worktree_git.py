"""Running git for the agents' worktrees: one call with a fixed, safe configuration, retried on lock contention, and
snapshots of a checkout's working state through a temporary index (``worktrees.py`` and ``worktree_merge.py``).

Every call runs ``git`` with hooks, signing, fsmonitor, auto-gc, pagers and colour off, a fixed author/committer (so
it works with no user git config), no prompt, the caller's ``GIT_*`` variables removed (a server started from a git
hook must not aim our calls at another repository) and literal pathspecs (a file an agent names ``:(exclude)*`` is a
file name). A lock held by another git process (the worktrees of one repository share its object store, refs and
``.git/worktrees``) is waited out for up to ``LOCK_RETRY_S``, then reported as ``Conflict``.
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

import anyio
from anyio.lowlevel import RunVar

from .errors import Conflict, InvalidRequest

AGENT_EMAIL = "agent@agent-fleet.invalid"
LOCK_RETRY_S = 10.0  # how long a call keeps retrying while another git process holds a lock of the repository
_LOCKED = re.compile(r"\.lock'?:? File exists|Unable to create '[^']*\.lock'|could not lock config file")
SCANNED = re.compile(r"failed to read .*worktrees/")  # another process's worktree entry, half-written
_LOCK_FILE = re.compile(r"'([^']+\.lock)'|lock config file (\S+)")
_CONFIG = (
    "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "core.quotepath=off",
    "-c", "core.fsmonitor=false", "-c", "gc.auto=0", "-c", "color.ui=false", "-c", "core.pager=cat",
    "-c", "user.useConfigOnly=false", "-c", "advice.detachedHead=false",
)  # fmt: skip


class GitFailed(Conflict):
    """A git command failed for a reason other than a transient lock; carries what git said."""

    def __init__(self, args: Sequence[str], stderr: str, what: str) -> None:
        self.args_ = tuple(args)
        self.stderr = stderr.strip()
        super().__init__(f"{what}: git {' '.join(args[:3])} failed: {self.stderr[-600:] or 'no message'}")


# ---- running git -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
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


async def run(
    args: Sequence[str],
    *,
    cwd: str | Path,
    ok: Collection[int] = (0,),
    stdin: bytes | None = None,
    index: str | None = None,
    gitdir: Path | None = None,
    name: str = "agent-fleet",
    what: str = "git",
) -> Out:
    """Run one git command; retry while a lock of the repository is held; raise ``GitFailed`` on other failures
    (exit codes outside ``ok``). ``index``: a temporary index file (``GIT_INDEX_FILE``); ``gitdir``: the worktree's
    registered git dir, named explicitly. Commands that add, remove or scan worktrees (``worktree ...``, ``branch``)
    run one at a time per repository in this process: git reads every ``.git/worktrees/*`` entry and fails on one
    another call is half-way through writing (``failed to read .../commondir``)."""
    where = [f"--git-dir={gitdir}", f"--work-tree={cwd}"] if gitdir else []  # never trust a worktree's .git file
    argv = ["git", *_CONFIG, *where, *args]
    env = _env(name, {"GIT_INDEX_FILE": index} if index else None)
    if args[0] not in ("worktree", "branch"):
        return await _run(argv, args, cwd=cwd, ok=ok, stdin=stdin, env=env, what=what)
    async with _structure_lock(cwd):
        return await _run(argv, args, cwd=cwd, ok=ok, stdin=stdin, env=env, what=what)


_LOCKS: RunVar[dict[str, anyio.Lock]] = RunVar("agent_fleet_worktree_locks")


def _structure_lock(cwd: str | Path) -> anyio.Lock:
    try:
        locks = _LOCKS.get()
    except LookupError:
        locks: dict[str, anyio.Lock] = {}
        _LOCKS.set(locks)
    try:
        key = str(common_dir(cwd))
    except OSError:
        key = str(cwd)
    return locks.setdefault(key, anyio.Lock())


async def _run(
    argv: list[str], args: Sequence[str], *, cwd: str | Path, ok: Collection[int], stdin: bytes | None,
    env: dict[str, str], what: str,
) -> Out:  # fmt: skip
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
            return Out(done.returncode, done.stdout, err)
        transient = SCANNED.search(err) and list(args[:2]) != ["worktree", "add"]  # add is not safe to repeat
        if _LOCKED.search(err) or transient:
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


def git_dir(top: str | Path) -> Path:
    """The git dir of the checkout at ``top`` (``.git`` itself, or where a linked worktree's ``.git`` file points)."""
    dot = Path(top) / ".git"
    if dot.is_file():
        line = dot.read_text(errors="replace").strip()
        if line.startswith("gitdir:"):
            gd = Path(line.removeprefix("gitdir:").strip())
            return gd if gd.is_absolute() else (Path(top) / gd).resolve()
    return dot


def nul_split(out: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


async def snapshot(top: str, tmp: str, *, what: str, gitdir: Path | None = None) -> str:
    """The tree of the checkout at ``top`` as the user sees it (HEAD + staged + unstaged + untracked, not ignored),
    built in a copy of its index under ``tmp``: the checkout's own index and files are not touched. Returns the path
    of the temporary index (its tree is what ``write-tree`` would give)."""
    index = os.path.join(tmp, "index")
    src = (gitdir or git_dir(top)) / "index"
    with contextlib.suppress(FileNotFoundError):  # no commit and nothing staged yet: start from an empty index
        await anyio.to_thread.run_sync(shutil.copyfile, src, index)
    await run(["add", "-A", "--", "."], cwd=top, index=index, gitdir=gitdir, what=what)
    return index


async def tree_of(top: str, *, what: str, gitdir: Path | None = None) -> str:
    """The tree sha of ``top``'s current working state (see ``_snapshot``)."""
    with tempfile.TemporaryDirectory(prefix="agent-fleet-idx-") as tmp:
        index = await snapshot(top, tmp, what=what, gitdir=gitdir)
        return (await run(["write-tree"], cwd=top, index=index, gitdir=gitdir, what=what)).text


async def rev(top: str, rev: str) -> str | None:
    out = await run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=top, ok=(0, 1))
    return out.text or None if out.rc == 0 else None


async def numstat(
    top: str, args: Sequence[str], *, index: str | None = None, gitdir: Path | None = None
) -> tuple[int, int, tuple[str, ...]]:
    """``git diff --numstat`` summed: lines added, removed (binary files count 0) and the files, sorted."""
    out = await run(["diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", *args],
                     cwd=top, index=index, gitdir=gitdir, what="counting changes")  # fmt: skip
    added = removed = 0
    files: list[str] = []
    for entry in nul_split(out.out):
        a, r, path = entry.split("\t", 2)
        added += int(a) if a.isdigit() else 0
        removed += int(r) if r.isdigit() else 0
        files.append(path)
    return added, removed, tuple(sorted(files))


async def names(top: str, args: Sequence[str], *, index: str | None = None) -> list[str]:
    """The NUL-separated paths a git command (``--name-only -z``) prints."""
    return nul_split((await run(args, cwd=top, index=index, what="listing changed files")).out)


def common_dir(top: str | Path) -> Path:
    """The repository's shared git dir (where ``worktrees/`` lives) for the checkout at ``top``."""
    gd = git_dir(top)
    link = gd / "commondir"
    return (gd / link.read_text().strip()).resolve() if link.is_file() else gd.resolve()


def worktree_admin(path: str | Path, repo: str | Path) -> tuple[Path | None, bool]:
    """The admin dir ``repo`` registered for the linked worktree at ``path`` (found from the repository's side:
    ``<common dir>/worktrees/*/gitdir`` naming ``<path>/.git``), and whether the worktree's own ``.git`` file still
    points there. (None, False) when it is not registered or its ``.git`` file is gone."""
    top = Path(path)
    try:
        root = common_dir(repo) / "worktrees"
        admins = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return None, False
    want = os.path.realpath(top)
    for admin in admins:
        try:
            named = Path((admin / "gitdir").read_text().strip())
        except OSError:
            continue
        if named.name == ".git" and os.path.realpath(named.parent) == want:
            dot = top / ".git"
            if not dot.exists() and not dot.is_symlink():
                return None, False  # the dir or its link is gone: a stale registration (``git worktree prune``)
            intact = dot.is_file() and not dot.is_symlink() and git_dir(top).resolve() == admin.resolve()
            return admin.resolve(), intact
    return None, False


def forget(repo: str | Path, path: str | Path, *, under: bool = False) -> None:
    """Delete the registrations ``repo`` holds for a worktree at ``path`` (``under``: for any worktree inside the
    folder ``path``) whose ``.git`` link is gone. Only those entries of ``<common dir>/worktrees``: ``git worktree
    prune`` would also delete an entry another process is half-way through creating, failing its ``worktree add``."""
    try:
        root = common_dir(repo) / "worktrees"
        admins = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return
    want = os.path.realpath(path)
    for admin in admins:
        try:
            named = Path((admin / "gitdir").read_text().strip())
        except OSError:
            continue
        where = os.path.realpath(named.parent)
        mine = os.path.dirname(where) == want if under else where == want
        if named.name == ".git" and mine and not named.exists() and not named.is_symlink():
            shutil.rmtree(admin, ignore_errors=True)
