"""Which agents get a git worktree of their own, and the fleet's side of its life: made at creation, one commit per
turn with the changes stored, re-attached or pruned at startup, removed at deletion, reported by doctor.

The git work itself is worktrees.py; this module decides when and records what came of it in the ``Store``.
Isolation resolves once, at creation: ``worktree`` for a readwrite agent whose cwd is in a git repository (the
default), ``none`` for a readonly agent (it changes nothing) and, with a note, for a cwd outside any repository;
asking for ``worktree`` outside a repository is an error. Git failures after creation are logged and never lose a
turn: the agent's work stays in its worktree and the next commit takes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from agent_fleet_mcp import worktrees
from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.inputs import quote
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.models import AgentRow
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.worktrees import Workspace

log = structlog.get_logger("agent_fleet.isolation")

WORKTREES_DIR = "worktrees"
# A worktree dir this young is never pruned as stale: its agent may be between `git worktree add` and its insert
# into the store (another server creating it right now).
PRUNE_GRACE_S = 120.0


@dataclass(frozen=True)
class Decision:
    """What ``decide`` resolved: whether the agent gets a worktree, and a note for the create result."""

    worktree: bool
    note: str | None = None


async def decide(spec: AgentSpec, cwd: str) -> Decision:
    """Resolve ``spec.isolation`` (None = automatic) for an agent working in ``cwd``. Raises ``InvalidRequest`` for
    ``worktree`` outside a git repository."""
    if spec.isolation == "none":
        return Decision(False)
    if spec.permission == "readonly":
        note = "a readonly agent changes no files: it needs no worktree and reads its cwd in place"
        return Decision(False, note if spec.isolation == "worktree" else None)
    if await worktrees.repo_top(cwd) is None:
        if spec.isolation == "worktree":
            raise InvalidRequest(
                f"isolation 'worktree' needs a git repository, and cwd {quote(cwd)} is not in one: run `git init` "
                "there (and commit), pass a cwd inside a repository, or pass isolation 'none' to edit it in place"
            )
        return Decision(False, f"not a git repository: the agent edits {cwd} in place")
    return Decision(True)


def worktrees_dir(home: Path) -> Path:
    return home / WORKTREES_DIR


async def create(*, home: Path, cwd: str, agent_id: str, agent_name: str, start_from: str | None = None) -> Workspace:
    """The agent's worktree (``worktrees.create``), with the timing logged (issue 11's creation-time figure)."""
    t0 = time.perf_counter()
    ws = await worktrees.create(cwd=cwd, home=home, agent_id=agent_id, agent_name=agent_name, start_from=start_from)
    log.info(
        "worktree_ready", agent=agent_name, path=ws.path, base=ws.base, ms=round(1000 * (time.perf_counter() - t0))
    )
    return ws


async def discard(ws: Workspace) -> None:
    """Undo a ``create`` whose agent never made it into the store (branch and all: it holds no work)."""
    try:
        await worktrees.remove(ws, delete_branch=True)
    except Exception:
        log.exception("worktree_discard_failed", path=ws.path)


async def commit_turn(store: Store, agent: AgentRow, message: str) -> str | None:
    """Commit what the agent's worktree holds (one commit per turn, ``message``'s first line) and store its changes
    against the base. Never raises: a git failure is logged (the work stays in the worktree for the next commit)."""
    ws = agent.workspace
    if ws is None:
        return None
    try:
        if not await anyio.Path(ws.path).is_dir():
            return None  # gone (deleted meanwhile): nothing to commit, ensure() re-makes it before a next turn
        sha = await worktrees.commit_turn(ws, message)
        if sha is None and agent.changes is not None:
            return None  # nothing new since the changes it has stored
        changes = await worktrees.changes(ws)
        await store.set_changes(agent.id, changes)
    except Exception:
        log.exception("turn_commit_failed", agent=agent.name, path=ws.path)
        return None
    if sha is not None:
        log.info("turn_committed", agent=agent.name, branch=ws.branch, commit=sha, changes=changes.summary())
    return sha


async def before_turn(store: Store, agent: AgentRow, n: int) -> None:
    """Before a turn starts: its worktree is there (re-made from the branch if its dir was lost) and what an earlier
    turn left uncommitted (a crash between its exit and its commit) is committed on its own. Never raises."""
    ws = agent.workspace
    if ws is None:
        return
    try:
        if await worktrees.ensure(ws):
            log.warning("worktree_remade", agent=agent.name, path=ws.path, branch=ws.branch)
    except Exception:
        log.exception("worktree_ensure_failed", agent=agent.name, path=ws.path)
        return
    await commit_turn(store, agent, f"work left uncommitted before turn {n}")


@dataclass(frozen=True)
class Removed:
    """What deleting an agent did to its worktree."""

    branch: str
    branch_kept: bool  # the branch holds work not merged into the checkout
    note: str


async def remove(agent: AgentRow, *, purge: bool) -> Removed | None:
    """Remove a deleted agent's worktree; keep its branch only when it holds unmerged work (never with ``purge``).
    None when the agent had no worktree; a git failure is logged and reported in the note."""
    ws = agent.workspace
    if ws is None:
        return None
    try:
        kept = await worktrees.remove(ws, delete_branch=purge)
    except Exception as exc:
        log.exception("worktree_remove_failed", agent=agent.name, path=ws.path)
        return Removed(ws.branch, True, f"could not remove its worktree {ws.path}: {exc}; run `agent-fleet doctor "
                       "--repair` to prune it")  # fmt: skip
    if kept:
        note = (
            f"its branch {ws.branch} holds unmerged work and was kept: merge it with `git merge {ws.branch}` in "
            f"{ws.repo} or drop it with `git branch -D {ws.branch}`"
        )
    else:
        note = f"its worktree and branch {ws.branch} were removed"
    return Removed(ws.branch, kept, note)


@dataclass(frozen=True)
class Stale:
    """Worktrees on disk whose agent is gone, and live agents whose worktree is missing."""

    stale: list[Path]  # dirs under <home>/worktrees of agents that are deleted or unknown
    missing: list[AgentRow]  # live agents whose worktree dir is gone (re-made from the branch at their next turn)


async def survey(store: Store, home: Path, *, now: float | None = None) -> Stale:
    """What ``prune``/``reattach`` would act on, without touching anything (doctor)."""
    agents = await store.isolated_agents()
    live = [a for a in agents if a.status != "deleted"]
    keep = await anyio.to_thread.run_sync(_recent, home, now or time.time()) | {a.id for a in live}
    dirs = await anyio.to_thread.run_sync(_dirs, worktrees_dir(home))
    stale = [d for d in dirs if d.name not in keep and d.name.removesuffix(".reattach") not in keep]
    missing = [a for a in live if a.workspace and not await anyio.Path(a.workspace.path).is_dir()]
    return Stale(stale, missing)


async def reattach_and_prune(store: Store, home: Path) -> list[str]:
    """At startup: re-attach every live agent's worktree (``ensure``: re-made from its branch when its dir or
    registration is gone) and prune the worktrees of agents that no longer live (their branches stay). Returns
    the pruned paths. Never raises."""
    try:
        live = [a for a in await store.isolated_agents() if a.status != "deleted"]
    except Exception:
        log.exception("worktree_reconcile_failed")
        return []
    for agent in live:
        assert agent.workspace is not None
        try:
            if await worktrees.ensure(agent.workspace):
                log.warning("worktree_remade", agent=agent.name, path=agent.workspace.path)
        except Exception:
            log.exception("worktree_ensure_failed", agent=agent.name, path=agent.workspace.path)
    return await prune(home, {a.id for a in live})


async def prune(home: Path, live_ids: Iterable[str]) -> list[str]:
    """Remove the worktrees under ``home`` whose agent is not in ``live_ids`` (nor made in the last
    ``PRUNE_GRACE_S``). Never raises."""
    keep = set(live_ids) | await anyio.to_thread.run_sync(_recent, home, time.time())
    try:
        removed = await worktrees.prune(home, keep)
    except Exception:
        log.exception("worktree_prune_failed", home=str(home))
        return []
    if removed:
        log.info("worktrees_pruned", count=len(removed), paths=removed)
    return removed


def _dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def _recent(home: Path, now: float) -> set[str]:
    """Agent ids of worktree dirs made in the last ``PRUNE_GRACE_S`` (an agent being created right now)."""
    out: set[str] = set()
    for d in _dirs(worktrees_dir(home)):
        try:
            if now - d.lstat().st_mtime < PRUNE_GRACE_S:
                out.add(d.name.removesuffix(".reattach"))
        except OSError:
            continue
    return out
