"""The read side of a fleet home for the human CLI: fleet status, one agent in detail, turn logs (followed live),
cost reports.

The database is opened without being created (``SqliteStore.open_existing``: read-only, WAL, so it never gets in
the way of the servers writing it). Rows are shaped by the same views as ``get_agent_status`` (views.py), so the
CLI and the orchestrator see the same numbers. No SQL here (store/sqlite.py), no rendering (cli_views.py).
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from pydantic import Field

from agent_fleet_mcp import budgets, turn_outcome, views
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import InvalidRequest, NotFound
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.schemas import AgentRowOut, BatchOut, FleetSummary, Out, Tokens
from agent_fleet_mcp.store.models import AgentRow, BatchRow, TurnRow
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.tracking import TurnStats
from agent_fleet_mcp.transcript import TranscriptReader

EMPTY_FLEET = "No agents yet. Start the MCP server and create some, or run `agent-fleet demo`."
GONE_GRACE_S = 3.0  # a dead process whose turn is still `running` this long after exiting: no server records it
FOLLOW_POLL_S = 0.25
FILES_SHOWN = 20
RESULT_PREVIEW_CHARS = 400
PROMPT_PREVIEW_CHARS = 200
RUN_RESULT_CHARS = 200
RECENT_BATCHES = 10
AGENTS_IN_HINT = 30

# -- outputs (also what --json prints) -------------------------------------------------------------------------


class AgentStatus(AgentRowOut):
    id: str
    process_gone: bool = Field(
        default=False,
        description="the turn's process has exited and no server has recorded it yet: turn_status, elapsed_s and "
        "last_error are its real outcome, read from its exit file and transcript",
    )


class BatchReport(BatchOut):
    created_at: float
    busy_s: float | None = Field(default=None, description="sum of the runs' durations so far (running ones until now)")
    saved_s: float | None = Field(default=None, description="busy_s - wall_s: time parallelism saved")


class StatusReport(Out):
    home: str
    at: float
    fleet: FleetSummary
    unpriced_agents: int = Field(description="agents that ran without a known cost (e.g. command runners)")
    agents: list[AgentStatus]
    deleted_agents: int = Field(default=0, description="deleted agents in the home (listed, and totalled, with --all)")
    batches: list[BatchReport]
    older_batches: int = Field(default=0, description="finished batches not listed (--all shows the most recent ones)")


class TurnInfo(Out):
    n: int
    status: str
    reason: str | None
    prompt: str = Field(description=f"the first {PROMPT_PREVIEW_CHARS} chars")
    model: str | None
    queued_at: float
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    tokens: Tokens
    cost_usd: float | None
    tool_calls: int
    reads: int
    writes: int
    exit_code: int | None
    error: str | None


class FileList(Out):
    total: int
    shown: list[str] = Field(description=f"the first {FILES_SHOWN}, in the order they were first touched")


class AgentDetail(Out):
    agent: AgentStatus
    cwd: str
    template: str | None
    session_id: str | None
    created_at: float
    turns: list[TurnInfo]
    reads: FileList
    writes: FileList
    last_error: str | None
    result_turn: int | None = Field(default=None, description="the latest finished turn with a result")
    result_preview: str | None = Field(default=None, description=f"its first {RESULT_PREVIEW_CHARS} chars")
    result_chars: int = 0
    transcript: str | None = Field(default=None, description="the latest turn's transcript file")


class CostGroup(Out):
    name: str
    runner: str | None = None
    model: str | None = None
    deleted: bool = False
    turns: int = 0
    tokens: Tokens = Field(default_factory=Tokens)
    cost_usd: float = Field(default=0.0, description="sum of the known costs")
    unpriced_turns: int = Field(
        default=0, description="turns that ran without a known cost: the total is a lower bound"
    )


class FleetBudget(Out):
    budget_usd: float | None = Field(description="AGENT_FLEET_BUDGET_USD (per UTC day); None when unset")
    spent_today_usd: float = Field(description="cost of the turns started today (UTC), deleted agents included")
    left_usd: float | None = None
    resets_at: float = Field(description="next 00:00 UTC")


class CostReport(Out):
    since: float | None
    budget: FleetBudget | None = None
    total: CostGroup
    by_agent: list[CostGroup]
    by_runner: list[CostGroup]
    by_model: list[CostGroup]


@dataclass(frozen=True)
class Note:
    """A line of commentary in a log stream (not an event of the transcript)."""

    text: str


LogItem = Event | str | Note  # a normalized event, a raw transcript line (--raw), or a note

# -- opening ---------------------------------------------------------------------------------------------------


@asynccontextmanager
async def open_fleet(settings: Settings) -> AsyncGenerator[Fleet | None, None]:
    """The fleet of ``settings.home`` for reading, or None when there is no fleet database yet (nothing is
    created). The ``Fleet`` is never started: no scheduler, no followers, no writes."""
    store = SqliteStore(settings.db_path)
    if not await store.open_existing():
        yield None
        return
    try:
        yield Fleet(settings, store)
    finally:
        await store.close()


# -- status ----------------------------------------------------------------------------------------------------


def empty_status(settings: Settings) -> StatusReport:
    return StatusReport(
        home=str(settings.home), at=time.time(), fleet=views.fleet_summary([]), unpriced_agents=0, agents=[],
        batches=[],
    )  # fmt: skip


async def status_report(fleet: Fleet, *, include_all: bool = False) -> StatusReport:
    """Every live agent and the running batches; with ``include_all`` also the deleted agents (counted in the
    totals) and the most recent finished batches."""
    everyone = await fleet.store.list_agents(include_deleted=True)
    agents = everyone if include_all else [a for a in everyone if a.status != "deleted"]
    rows = await agent_statuses(fleet, agents)
    batches = await fleet.store.list_batches() if include_all else await fleet.store.list_batches(status="running")
    older = max(0, len(batches) - RECENT_BATCHES) if include_all else 0
    now = time.time()
    return StatusReport(
        home=str(fleet.settings.home), at=now, fleet=views.fleet_summary(list(rows)),
        unpriced_agents=sum(1 for r in rows if _unpriced(r)), agents=rows,
        deleted_agents=sum(1 for a in everyone if a.status == "deleted"),
        batches=[await batch_report(fleet, b, now) for b in batches[older:]], older_batches=older,
    )  # fmt: skip


async def agent_statuses(fleet: Fleet, agents: list[AgentRow]) -> list[AgentStatus]:
    """Rows as get_agent_status shows them, except a turn whose process ended while no server recorded it: that
    one shows its real outcome and duration, read from its files (``process_gone``)."""
    rows = await views.agent_rows(fleet, agents)
    latest = await fleet.store.latest_turns([a.id for a in agents])
    by_id = {a.id: a for a in agents}
    running = [(by_id[t.agent_id], t) for t in latest.values() if t.status == "running" and t.pid is not None]
    ended = await anyio.to_thread.run_sync(_ended_turns, fleet, running, time.time())
    out: list[AgentStatus] = []
    for a, row in zip(agents, rows, strict=True):
        status = AgentStatus(**row.model_dump(), id=a.id)
        if (end := ended.get(a.id)) is not None:
            status = status.model_copy(
                update={
                    "process_gone": True, "status": "idle" if end.status == "succeeded" else "failed",
                    "turn_status": end.status, "elapsed_s": end.elapsed_s, "idle_s": None, "stalled": False,
                    "last_error": end.error or row.last_error,
                }
            )  # fmt: skip
        out.append(status)
    return out


@dataclass(frozen=True)
class EndedOnDisk:
    """The outcome of a turn whose process ended while no server recorded it, as the server will record it."""

    status: str
    error: str | None
    exit_code: int | None
    ended_at: float
    elapsed_s: float | None


def _ended_turns(fleet: Fleet, turns: Iterable[tuple[AgentRow, TurnRow]], now: float) -> dict[str, EndedOnDisk]:
    """Agent id -> the real outcome of its running turn whose process has exited (from the exit file and the
    transcript, exactly as a following server closes it). Blocking (psutil, files): call from a thread."""
    out: dict[str, EndedOnDisk] = {}
    for agent, t in turns:
        if t.pid is None or proc.is_alive(t.pid, t.proc_start):
            continue
        files = fleet.turn_files(t.agent_id, t.n)
        code = proc.exit_code(files)
        ended = turn_outcome.ended_on_disk(files) or t.last_event_at or t.started_at or now
        if code is None and now - ended <= GONE_GRACE_S:
            continue  # just died: its exit file may be on its way
        reader = TranscriptReader(files.out, fleet.runner(agent.spec.runner).new_parser(fleet.turn_request(agent, t)))
        stats = TurnStats()
        for ev in reader.read_new():
            stats.apply(ev)
        stream_result = stats.has_result
        for ev in reader.close(code, files.err):
            stats.apply(ev)
        status, _reason, error = turn_outcome.turn_outcome(stats, stream_result=stream_result, exit_code=code)
        ended = max(ended, t.started_at or ended)
        elapsed = round(ended - t.started_at, 1) if t.started_at is not None else None
        out[t.agent_id] = EndedOnDisk(status=status, error=error, exit_code=code, ended_at=ended, elapsed_s=elapsed)
    return out


def _unpriced(row: AgentRowOut) -> bool:
    ran = row.turn_status not in (None, "queued") or row.tokens.input + row.tokens.output > 0
    return row.cost_usd is None and ran


async def batch_report(fleet: Fleet, batch: BatchRow, now: float) -> BatchReport:
    view = await views.batch_view(fleet, batch.id, result_chars=RUN_RESULT_CHARS)
    spans = [((r.ended_at or now) - r.started_at) for r in await fleet.store.runs_of(batch.id) if r.started_at]
    busy = round(sum(spans), 1) if spans else None
    saved = round(busy - view.wall_s, 1) if busy is not None and view.wall_s is not None else None
    return BatchReport(**view.model_dump(), created_at=batch.created_at, busy_s=busy, saved_s=saved)


# -- one agent -------------------------------------------------------------------------------------------------


async def find_agent(fleet: Fleet, ref: str) -> AgentRow:
    """A live agent by name or id (else the newest deleted one of that name). ``NotFound`` lists the agents."""
    agent = await fleet.store.get_agent(ref, include_deleted=True)
    if agent is not None:
        return agent
    everyone = await fleet.store.list_agents(include_deleted=True)
    live = [a.name for a in everyone if a.status != "deleted"]
    raise NotFound(not_found_message(ref, live, deleted=[a.name for a in everyone if a.status == "deleted"]))


def not_found_message(ref: str, names: list[str], *, deleted: list[str] | None = None) -> str:
    """Says which agents exist (and the closest name) so the next command can be right."""
    deleted = list(dict.fromkeys(deleted or ()))
    if not names and not deleted:
        return f"no agent named {ref!r}. {EMPTY_FLEET}"
    close = difflib.get_close_matches(ref, names + deleted, n=1)
    msg = f"no agent named {ref!r}." + (f" Did you mean {close[0]!r}?" if close else "")
    for label, group in (("Agents", names), ("Deleted", deleted)):
        if group:
            more = f" (+{len(group) - AGENTS_IN_HINT} more)" if len(group) > AGENTS_IN_HINT else ""
            msg += f" {label}: {', '.join(group[:AGENTS_IN_HINT])}{more}."
    if not names:
        msg += " No live agents."
    return msg


async def pick_turn(fleet: Fleet, agent: AgentRow, n: int | None) -> TurnRow:
    """Turn ``n`` of the agent (default: its latest)."""
    turns = await fleet.store.turns_of(agent.id)
    if not turns:
        raise NotFound(f"agent {agent.name!r} has no turns yet (it was created without a prompt)")
    if n is None:
        return turns[-1]
    for t in turns:
        if t.n == n:
            return t
    raise NotFound(f"agent {agent.name!r} has turns 1..{turns[-1].n}; there is no turn {n}")


async def agent_detail(fleet: Fleet, ref: str) -> AgentDetail:
    agent = await find_agent(fleet, ref)
    [row] = await agent_statuses(fleet, [agent])
    turns = await fleet.store.turns_of(agent.id)
    infos = [_turn_info(t) for t in turns]
    if row.process_gone and infos:  # the latest turn ended while no server was up: its real outcome
        infos[-1] = infos[-1].model_copy(
            update={"status": row.turn_status, "duration_s": row.elapsed_s, "error": row.last_error}
        )
    reads = _union(t.reads for t in turns)
    writes = _union(t.writes for t in turns)
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
        transcript=str(fleet.turn_files(agent.id, turns[-1].n).out) if turns else None,
    )  # fmt: skip


def _union(lists: Iterable[list[str]]) -> list[str]:
    return list(dict.fromkeys(p for paths in lists for p in paths))


def _turn_info(t: TurnRow) -> TurnInfo:
    duration = None
    if t.started_at is not None:
        duration = round((t.ended_at or time.time()) - t.started_at, 1)
    return TurnInfo(
        n=t.n, status=t.status, reason=t.reason, prompt=t.prompt[:PROMPT_PREVIEW_CHARS], model=t.model,
        queued_at=t.queued_at, started_at=t.started_at, ended_at=t.ended_at, duration_s=duration,
        tokens=Tokens(input=t.input_tokens, output=t.output_tokens, cache_read=t.cache_read_tokens,
                      cache_write=t.cache_write_tokens),
        cost_usd=t.cost_usd, tool_calls=t.tool_calls, reads=len(t.reads), writes=len(t.writes),
        exit_code=t.exit_code, error=t.error,
    )  # fmt: skip


# -- logs ------------------------------------------------------------------------------------------------------


class _RawParser:
    """Keeps each transcript line as it is (``logs --raw``)."""

    def feed(self, line: str) -> list[Event]:
        return [{"type": "raw", "line": line}]  # pyright: ignore[reportReturnType] (not an Event: see _item)

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return []


async def turn_log(
    fleet: Fleet, agent: AgentRow, turn: TurnRow, *, follow: bool = False, raw: bool = False,
    poll_s: float = FOLLOW_POLL_S,
) -> AsyncGenerator[LogItem, None]:  # fmt: skip
    """The turn's transcript as normalized events (through its runner's parser, so every backend reads the same)
    or as raw lines. With ``follow``, keeps reading until the turn ends; a process that died while no server was
    recording it also ends the stream (with the closing events its exit code gives)."""
    files = fleet.turn_files(agent.id, turn.n)
    if raw:
        reader = TranscriptReader(files.out, _RawParser())
    else:
        reader = TranscriptReader(
            files.out, fleet.runner(agent.spec.runner).new_parser(fleet.turn_request(agent, turn))
        )
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
        cur = await fleet.store.get_turn(agent.id, turn.n)
        if cur is None:
            yield Note(f"turn {turn.n} of {agent.name} was purged")
            return
        if cur.done:
            for ev in await anyio.to_thread.run_sync(reader.close, cur.exit_code, files.err):
                if ev.get("ts", 0) >= opened:
                    ev["ts"] = cur.ended_at  # closing events are rebuilt from the exit: date them at the end  # pyright: ignore[reportGeneralTypeIssues]
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
            if time.monotonic() - gone_since > GONE_GRACE_S:
                code = await anyio.to_thread.run_sync(proc.exit_code, files)
                for ev in await anyio.to_thread.run_sync(reader.close, code, files.err):
                    yield _item(ev)
                yield Note(
                    f"the process of turn {cur.n} has ended (exit code {'?' if code is None else code}) but no server "
                    "has recorded it yet: start the MCP server (`agent-fleet serve` or your MCP host) to record it"
                )
                return
        await anyio.sleep(poll_s)


def _item(ev: Event) -> LogItem:
    raw: dict[str, object] = dict(ev)
    return str(raw["line"]) if raw.get("type") == "raw" else ev


def _ended(t: TurnRow) -> str:
    took = f" in {t.ended_at - t.started_at:.1f}s" if t.ended_at and t.started_at else ""
    why = f": {t.error or t.reason}" if t.status != "succeeded" and (t.error or t.reason) else ""
    return f"turn {t.n} {t.status}{took}{why}"


# -- cost ------------------------------------------------------------------------------------------------------

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


async def fleet_budget(store: SqliteStore, settings: Settings) -> FleetBudget:
    now = time.time()
    spent = await budgets.fleet_spent_today(store, now)
    left = None if settings.budget_usd is None else round(max(0.0, settings.budget_usd - spent), 6)
    return FleetBudget(
        budget_usd=settings.budget_usd, spent_today_usd=round(spent, 6), left_usd=left,
        resets_at=budgets.day_start(now) + 86_400,
    )  # fmt: skip


async def cost_report(
    store: SqliteStore, *, since: float | None = None, settings: Settings | None = None
) -> CostReport:
    rows = await store.turn_usage(since=since)
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
            _add_turn(group, r)
    budget = None if settings is None else await fleet_budget(store, settings)
    return CostReport(
        since=since, budget=budget, total=total, by_agent=list(by_agent.values()),
        by_runner=_by_cost(by_runner.values()), by_model=_by_cost(by_model.values()),
    )  # fmt: skip


def _add_turn(group: CostGroup, r: dict[str, Any]) -> None:
    group.turns += 1
    t = group.tokens
    t.input += int(r["input_tokens"] or 0)
    t.output += int(r["output_tokens"] or 0)
    t.cache_read += int(r["cache_read_tokens"] or 0)
    t.cache_write += int(r["cache_write_tokens"] or 0)
    if r["cost_usd"] is not None:
        group.cost_usd = round(group.cost_usd + float(r["cost_usd"]), 6)
    elif r["started_at"] is not None and r["status"] != "queued":
        group.unpriced_turns += 1


def _by_cost(groups: Iterable[CostGroup]) -> list[CostGroup]:
    return sorted(groups, key=lambda g: (-g.cost_usd, -(g.tokens.input + g.tokens.output), g.name))
