"""The CLI's reports, read through the same reader as the tools: one agent in detail, a turn's log (followed live),
cost. ``open_reader`` opens a fleet home's database read-only for them and never builds a ``Fleet``."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime

import anyio

from agent_fleet_mcp import budgets
from agent_fleet_mcp import reader as base
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.reader import FleetReader
from agent_fleet_mcp.reader_models import (
    FILES_SHOWN,
    RESULT_PREVIEW_CHARS,
    AgentDetail,
    CostGroup,
    CostReport,
    FileList,
    FleetBudget,
    LogItem,
    Note,
    StatusReport,
    add_turn,
    by_cost,
    fleet_summary,
    turn_info,
    union,
    workspace_out,
)  # fmt: skip
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.store.models import AgentRow, TurnRow
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.transcript import TranscriptReader

FOLLOW_POLL_S = 0.25


@asynccontextmanager
async def open_reader(settings: Settings) -> AsyncGenerator[ReportReader | None]:
    """The reader of ``settings.home`` (the database opened read-only), or None when there is no fleet database
    yet (nothing is created)."""
    store = SqliteStore(settings.db_path)
    if not await store.open_existing():
        yield None
        return
    try:
        yield ReportReader(settings, store)
    finally:
        await store.close()


class _RawParser:
    """Keeps each transcript line as it is (``logs --raw``)."""

    def feed(self, line: str) -> list[Event]:
        return [{"type": "raw", "line": line}]  # pyright: ignore[reportReturnType] (not an Event: see _item)

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return []


class ReportReader(FleetReader):
    """``FleetReader`` plus the reports only the CLI shows."""

    # -- one agent in detail, its logs -----------------------------------------------------------------------
    async def agent_detail(self, ref: str) -> AgentDetail:
        agent = await self.find_agent(ref)
        [row] = await self.agent_statuses([agent])
        turns = await self._store.turns_of(agent.id)
        infos = [turn_info(t) for t in turns]
        if row.process_gone and infos:  # the latest turn ended while no server was up: its real outcome
            infos[-1] = infos[-1].model_copy(
                update={"status": row.turn_status, "duration_s": row.elapsed_s, "error": row.last_error}
            )
        reads = union(t.reads for t in turns)
        writes = union(t.writes for t in turns)
        finished = [t for t in turns if t.done and t.result_text]
        last = finished[-1] if finished else None
        return AgentDetail(
            agent=row, cwd=agent.cwd, template=agent.spec.template, session_id=agent.session_id,
            created_at=agent.created_at, turns=infos,
            reads=FileList(total=len(reads), shown=reads[:FILES_SHOWN]),
            writes=FileList(total=len(writes), shown=writes[:FILES_SHOWN]),
            last_error=row.last_error, result_turn=last.n if last else None,
            result_preview=(last.result_text or "")[:RESULT_PREVIEW_CHARS] if last else None,
            result_chars=len(last.result_text or "") if last else 0,
            transcript=str(self.turn_files(agent.id, turns[-1].n).out) if turns else None,
            workspace=workspace_out(agent),
        )  # fmt: skip

    async def turn_log(
        self, agent: AgentRow, turn: TurnRow, *, follow: bool = False, raw: bool = False,
        poll_s: float = FOLLOW_POLL_S,
    ) -> AsyncGenerator[LogItem, None]:  # fmt: skip
        """The turn's transcript as normalized events (through its runner's parser, so every backend reads the same)
        or as raw lines. With ``follow``, keeps reading until the turn ends; a process that died while no server was
        recording it also ends the stream (with the closing events its exit code gives)."""
        files = self.turn_files(agent.id, turn.n)
        reader = TranscriptReader(files.out, _RawParser()) if raw else self._transcript(agent, turn)
        said_queued = False
        gone_since: float | None = None
        opened = time.time()
        catching_up = True
        while True:
            for ev in await anyio.to_thread.run_sync(reader.read_new):
                if catching_up and ev.get("ts", 0) >= opened:
                    ev.pop("ts")  # stamped by the parser just now (a stream without times): not when it happened
                yield _item(ev)
            catching_up = False
            cur = await self._store.get_turn(agent.id, turn.n)
            if cur is None:
                yield Note(f"turn {turn.n} of {agent.name} was purged")
                return
            if cur.done:
                for ev in await anyio.to_thread.run_sync(reader.close, cur.exit_code, files.err):
                    if ev.get("ts", 0) >= opened:
                        ev["ts"] = cur.ended_at  # pyright: ignore[reportGeneralTypeIssues] (rebuilt from the exit: dated at its end)
                    yield _item(ev)
                yield Note(_ended(cur))
                return
            if not follow:
                yield Note(f"turn {cur.n} is {cur.status}; `-f` follows it live")
                return
            if cur.pid is None:
                if not said_queued:
                    yield Note(f"turn {cur.n} is {cur.status}; waiting for it to start")
                    said_queued = True
            elif await anyio.to_thread.run_sync(proc.is_alive, cur.pid, cur.proc_start):
                gone_since = None
            else:
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > base.GONE_GRACE_S:
                    code = await anyio.to_thread.run_sync(proc.exit_code, files)
                    for ev in await anyio.to_thread.run_sync(reader.close, code, files.err):
                        yield _item(ev)
                    yield Note(
                        f"the process of turn {cur.n} has ended (exit code {'?' if code is None else code}) but no "
                        "server has recorded it yet: start the MCP server (`agent-fleet serve` or your MCP host) to "
                        "record it"
                    )
                    return
            await anyio.sleep(poll_s)

    # -- cost ------------------------------------------------------------------------------------------------
    async def fleet_budget(self) -> FleetBudget:
        now = time.time()
        spent = await budgets.fleet_spent_today(self._store, now)
        budget = self.settings.budget_usd
        left = None if budget is None else round(max(0.0, budget - spent), 6)
        return FleetBudget(
            budget_usd=budget, spent_today_usd=round(spent, 6), left_usd=left, resets_at=budgets.day_start(now) + 86_400
        )

    async def cost_report(self, *, since: float | None = None) -> CostReport:
        """Tokens and cost of the turns started since ``since`` by agent, runner and model, and the daily budget."""
        rows = await self._store.turn_usage(since=since)
        total = CostGroup(name="total")
        by_agent: dict[str, CostGroup] = {}
        by_runner: dict[str, CostGroup] = {}
        by_model: dict[str, CostGroup] = {}
        for r in rows:
            agent = by_agent.setdefault(
                r["agent_id"],
                CostGroup(name=r["agent"], runner=r["runner"], deleted=r["agent_status"] == "deleted"),
            )
            agent.model = r["model"] or agent.model
            runner = by_runner.setdefault(r["runner"], CostGroup(name=r["runner"]))
            model = by_model.setdefault(r["model"] or "-", CostGroup(name=r["model"] or "-", runner=r["runner"]))
            if model.runner != r["runner"]:
                model.runner = None  # the same model name under several runners
            for group in (total, agent, runner, model):
                add_turn(group, r)
        return CostReport(
            since=since, budget=await self.fleet_budget(), total=total, by_agent=list(by_agent.values()),
            by_runner=by_cost(by_runner.values()), by_model=by_cost(by_model.values()),
        )  # fmt: skip


def _item(ev: Event) -> LogItem:
    raw: dict[str, object] = dict(ev)
    return str(raw["line"]) if raw.get("type") == "raw" else ev


def _ended(t: TurnRow) -> str:
    took = f" in {t.ended_at - t.started_at:.1f}s" if t.ended_at and t.started_at else ""
    why = f": {t.error or t.reason}" if t.status != "succeeded" and (t.error or t.reason) else ""
    return f"turn {t.n} {t.status}{took}{why}"


def empty_status(settings: Settings) -> StatusReport:
    """The status of a home without a fleet database."""
    return StatusReport(
        home=str(settings.home), at=time.time(), fleet=fleet_summary([]), unpriced_agents=0, agents=[], batches=[]
    )


_SINCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``1h``, ``2d``, ``1w`` ago, or a local date/time such as ``2026-11-20`` or ``2026-11-20T09:30``."""
    now = time.time() if now is None else now
    if m := _SINCE_RE.match(text):
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise InvalidRequest(
            f"--since takes a duration (30m, 1h, 2d, 1w) or a local date/time (2026-11-20, 2026-11-20T09:30); "
            f"got {text!r}"
        ) from None
