"""`agent-fleet doctor --repair`: keep a damaged fleet.db aside and rebuild the fleet from what the disk holds.

The turn files are the ground truth of what ran (each turn's process writes them itself, see runners/process.py):
``agents/<id>/turns/NNNN.prompt.txt`` (its prompt), ``.out.jsonl`` (its transcript), ``.exit`` (its exit status),
``.started`` (its pid). From them every turn is rebuilt with its outcome, usage and result, exactly as a following
server would have closed it; a turn whose process still runs is recorded ``running`` with its pid, so the next
server follows it. What only the database held (an agent's name, spec and cwd, queued turns that never started,
batches) is taken from the damaged file where SQLite can still read it, and otherwise reported as lost.
No SQL here (store/sqlite.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import get_runner, started
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.integrity import quick_check, salvage_agents
from agent_fleet_mcp.store.models import TurnStatsUpdate
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_outcome import ended_on_disk, turn_outcome
from agent_fleet_mcp.turn_stats import TurnStats

UNKNOWN_SPEC_ERROR = (
    "rebuilt from its turn files after fleet.db was damaged: its name, spec and cwd were lost. Read its output "
    "(agent-fleet logs), then delete_agent it and create it again"
)


@dataclass
class RepairReport:
    db: str
    repaired: bool = False
    message: str = ""
    kept: list[str] = field(default_factory=lambda: list[str]())
    agents: int = 0
    agents_from_db: int = 0
    turns: dict[str, int] = field(default_factory=lambda: dict[str, int]())
    lost: list[str] = field(default_factory=lambda: list[str]())
    worktrees_pruned: list[str] = field(default_factory=lambda: list[str]())  # stale agent worktrees removed


def holders(path: Path) -> list[int]:
    """Pids of this user's processes that have ``path`` open (a running server)."""
    target = str(path)
    out: list[int] = []
    for p in psutil.process_iter(["pid", "uids"]):
        with contextlib.suppress(psutil.Error):
            if p.pid == os.getpid() or p.info["uids"] is None or p.info["uids"].real != os.getuid():
                continue
            if any(f.path in (target, target + "-wal") for f in p.open_files()):
                out.append(p.pid)
    return out


@dataclass
class _TurnPlan:
    row: dict[str, Any]
    stats: TurnStatsUpdate


@dataclass
class _AgentPlan:
    row: dict[str, Any]
    known: bool
    status: str
    session_id: str | None
    turns: list[_TurnPlan]


def repair_store(settings: Settings, *, force: bool = False) -> RepairReport:
    """Keep the damaged database aside (``fleet.db.damaged-<UTC time>`` plus its -wal/-shm) and rebuild a new one
    from the agent folders. Refuses while a process has the database open, and leaves an intact one alone."""
    db = settings.db_path
    report = RepairReport(db=str(db))
    if not db.exists():
        report.message = f"there is no {db}: nothing to repair (the first server start creates it)"
        return report
    check = quick_check(db, time_budget_s=30.0) if db.is_file() else None
    if check is not None and check.ok and not force:
        from agent_fleet_mcp.doctor import prune_worktrees

        report.worktrees_pruned = prune_worktrees(settings)
        report.message = f"{db} is intact (quick_check ok): nothing to repair"
        if report.worktrees_pruned:
            report.message += f" in it; pruned {len(report.worktrees_pruned)} stale worktree(s)"
        return report
    if busy := holders(db):
        report.message = (
            f"{db} is open in process(es) {', '.join(map(str, busy))}: stop every agent-fleet server on this home "
            "(and close agent-fleet watch), then run `agent-fleet doctor --repair` again"
        )
        return report
    salvaged: dict[str, dict[str, Any]] = {str(r["id"]): r for r in salvage_agents(db)} if db.is_file() else {}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(db) + suffix)
        if src.exists():
            dst = Path(f"{db}.damaged-{stamp}{suffix}")
            src.rename(dst)
            report.kept.append(str(dst))
    ids: set[str] = set(salvaged)
    if settings.agents_dir.is_dir():
        ids.update(p.name for p in settings.agents_dir.iterdir() if p.is_dir())
    plans = [_plan_agent(settings, agent_id, salvaged.get(agent_id)) for agent_id in sorted(ids)]
    anyio.run(_write, db, plans)
    report.repaired = True
    report.agents = len(plans)
    report.agents_from_db = sum(1 for p in plans if p.known)
    for plan in plans:
        for t in plan.turns:
            report.turns[t.row["status"]] = report.turns.get(t.row["status"], 0) + 1
    if unknown := report.agents - report.agents_from_db:
        report.lost.append(
            f"the name, spec and cwd of {unknown} agent(s) (not readable from the damaged file): they are listed "
            "as recovered-<id>, failed, with their turns and outputs; read them, then delete_agent them"
        )
    report.lost.append("queued turns that had not started, run_agents batches, idempotency keys of lost agents")
    report.message = f"rebuilt {db} from the turn files on disk"
    return report


async def _write(db: Path, plans: list[_AgentPlan]) -> None:
    async with SqliteStore(db) as store:
        for plan in plans:
            deleted = plan.row.get("status") == "deleted"
            await store.restore_agent({**plan.row, "status": "deleted" if deleted else plan.status})
            for t in plan.turns:
                await store.restore_turn(t.row)
                await store.update_turn_stats(plan.row["id"], t.row["n"], t.stats)
            if plan.session_id:
                await store.set_session_id(plan.row["id"], plan.session_id)


def _plan_agent(settings: Settings, agent_id: str, row: dict[str, Any] | None) -> _AgentPlan:
    agent_dir = settings.agents_dir / agent_id
    now = time.time()
    spec: AgentSpec | None = None
    if row is not None:
        with contextlib.suppress(ValueError):
            spec = AgentSpec.model_validate_json(row["spec_json"])
    known = row is not None and spec is not None
    if row is None or spec is None:
        spec = AgentSpec(runner="command", cwd=str(agent_dir))
        row = {
            "id": agent_id, "name": f"recovered-{agent_id}"[:64], "spec_json": spec.model_dump_json(),
            "spec_hash": "recovered", "cwd": str(agent_dir), "created_at": _mtime(agent_dir) or now,
            "last_error": UNKNOWN_SPEC_ERROR,
        }  # fmt: skip
    row = {**row, "updated_at": now}
    turns, session = _plan_turns(agent_dir, agent_id, str(row["name"]), spec, settings)
    last = turns[-1].row["status"] if turns else None
    status = "idle" if last is None else {"running": "running", "succeeded": "idle"}.get(last, "failed")
    if not known and status != "running":
        status = "failed"
    return _AgentPlan(row=row, known=known, status=status, session_id=session or row.get("session_id"), turns=turns)


def _plan_turns(
    agent_dir: Path, agent_id: str, name: str, spec: AgentSpec, settings: Settings
) -> tuple[list[_TurnPlan], str | None]:
    """Each turn as its files tell it: running (its process is alive: the next server follows it) or closed with
    the outcome a following server would have recorded."""
    turns_dir = agent_dir / "turns"
    numbers = sorted(
        {int(p.name[:4]) for p in turns_dir.iterdir() if p.name[:4].isdigit()} if turns_dir.is_dir() else set()
    )
    out: list[_TurnPlan] = []
    session: str | None = None
    for n in numbers:
        files = proc.TurnFiles.for_turn(turns_dir, n)
        try:
            prompt = files.prompt.read_text(encoding="utf-8", errors="replace")
        except OSError:
            prompt = "(prompt lost with the database)"
        req = TurnRequest(
            agent_id=agent_id, agent_name=name, turn=n, prompt=prompt, spec=spec, cwd=agent_dir, agent_dir=agent_dir,
            env=dict(settings.env),
        )  # fmt: skip
        mark = started.read(files.exit, now=time.time())
        queued_at = _mtime(files.prompt) or _mtime(files.out) or time.time()
        row: dict[str, Any] = {
            "agent_id": agent_id, "n": n, "prompt": prompt, "runner": spec.runner, "model": spec.model,
            # a spare child of the fork server was forked before its turn came: not before the turn was queued
            "queued_at": queued_at, "started_at": max((mark.proc_start if mark else None) or queued_at, queued_at),
            "out_path": str(files.out),
        }  # fmt: skip
        stats = TurnStats()
        reader = TranscriptReader(files.out, get_runner(spec.runner).new_parser(req))
        for ev in reader.read_new():
            stats.apply(ev)
        if mark is not None and mark.alive and mark.pid is not None:
            row.update(status="running", pid=mark.pid, proc_start=mark.proc_start)
        else:
            code = proc.exit_code(files)
            stream_result = stats.has_result
            for ev in reader.close(code, files.err):
                stats.apply(ev)
            status, reason, error = turn_outcome(stats, stream_result=stream_result, exit_code=code)
            row.update(
                status=status, reason=reason, error=error, exit_code=code, result_text=stats.result_text,
                is_error=status != "succeeded", ended_at=ended_on_disk(files) or queued_at,
                pid=mark.pid if mark else None, proc_start=mark.proc_start if mark else None,
            )  # fmt: skip
        out.append(_TurnPlan(row=row, stats=stats.db_fields()))
        session = stats.session_id or session
    return out, session


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
