"""Shaping store rows into the compact outputs of the tools and the CLI (no I/O except through the fleet)."""

from __future__ import annotations

import time

import anyio

from agent_fleet_mcp import budgets
from agent_fleet_mcp.batches import waves
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.render import render_events
from agent_fleet_mcp.schemas import AgentRowOut, BatchOut, FleetSummary, LimitsOut, RunOut, Tokens
from agent_fleet_mcp.store.models import AgentRow, AgentTotals, TurnRow
from agent_fleet_mcp.transcript import TranscriptReader

STALL_AFTER_S = 120.0
CONTEXT_WINDOW = 200_000
RUN_RESULT_CHARS = 1_500
RECENT_ACTIVITY_CHARS = 3_000


async def agent_rows(fleet: Fleet, agents: list[AgentRow]) -> list[AgentRowOut]:
    ids = [a.id for a in agents]
    latest = await fleet.store.latest_turns(ids)
    totals = await fleet.store.agent_totals(ids)
    now = time.time()
    return [
        agent_row(a, latest.get(a.id), totals.get(a.id, AgentTotals()), now, budgets.Limits.of(a.spec, fleet.settings))
        for a in agents
    ]


def limits_out(limits: budgets.Limits, tot: AgentTotals) -> LimitsOut:
    spent = budgets.Spent.from_totals(tot)
    return LimitsOut(
        max_turns=limits.max_turns, timeout_s=limits.timeout_s, max_cost_usd=limits.max_cost_usd,
        max_tokens=limits.max_tokens,
        cost_left_usd=None if limits.max_cost_usd is None else round(max(0.0, limits.max_cost_usd - spent.cost_usd), 6),
        tokens_left=None if limits.max_tokens is None else max(0, limits.max_tokens - spent.tokens),
    )  # fmt: skip


def agent_row(
    agent: AgentRow, turn: TurnRow | None, tot: AgentTotals, now: float, limits: budgets.Limits | None = None
) -> AgentRowOut:
    running = turn is not None and turn.status == "running"
    idle_s = round(now - turn.last_event_at, 1) if running and turn and turn.last_event_at else None
    elapsed = None
    if turn is not None and turn.started_at is not None:
        elapsed = round((turn.ended_at or now) - turn.started_at, 1)
    ctx = turn.context_tokens if turn else None
    cost = None if tot.unpriced else tot.cost_usd
    return AgentRowOut(
        name=agent.name,
        status=agent.status,
        runner=agent.spec.runner,
        model=(turn.model if turn and turn.model else agent.spec.model),
        turn=turn.n if turn else None,
        turn_status=turn.status if turn else None,
        activity=(turn.activity if turn else None),
        turns=tot.turns,
        queued=tot.queued,
        tool_calls=tot.tool_calls,
        tokens=Tokens(
            input=tot.input_tokens,
            output=tot.output_tokens,
            cache_read=tot.cache_read_tokens,
            cache_write=tot.cache_write_tokens,
        ),
        cost_usd=None if cost is None else round(float(cost), 6),
        context_pct=round(100.0 * ctx / CONTEXT_WINDOW, 1) if ctx else None,
        elapsed_s=elapsed,
        idle_s=idle_s,
        stalled=bool(idle_s is not None and idle_s > STALL_AFTER_S),
        reads=len(turn.reads) if turn else 0,
        writes=len(turn.writes) if turn else 0,
        last_error=(turn.error if turn and turn.error else agent.last_error),
        limits=None if limits is None else limits_out(limits, tot),
    )


def fleet_summary(rows: list[AgentRowOut]) -> FleetSummary:
    def count(s: str) -> int:
        return sum(1 for r in rows if r.status == s)

    return FleetSummary(
        agents=len(rows),
        running=count("running"),
        queued=sum(r.queued for r in rows),
        idle=count("idle"),
        failed=count("failed"),
        stopped=count("stopped"),
        tokens=Tokens(
            input=sum(r.tokens.input for r in rows),
            output=sum(r.tokens.output for r in rows),
            cache_read=sum(r.tokens.cache_read for r in rows),
            cache_write=sum(r.tokens.cache_write for r in rows),
        ),
        cost_usd=round(sum(r.cost_usd or 0.0 for r in rows), 6),
    )


async def batch_view(fleet: Fleet, batch_id: str, *, result_chars: int = RUN_RESULT_CHARS) -> BatchOut:
    runs = await fleet.batches.get(batch_id)
    batch = await fleet.store.get_batch(batch_id)
    assert batch is not None
    wave_of = waves({r.run_id: r.depends_on for r in runs})
    out: list[RunOut] = []
    names: dict[str, str] = {}
    for a in await fleet.store.list_agents(include_deleted=True):
        names[a.id] = a.name
    durations: list[float] = []
    for r in runs:
        result, truncated = None, False
        if r.status in ("succeeded", "failed") and r.agent_id:
            turn = await fleet.store.get_turn(r.agent_id, 1)
            text = (turn.result_text if turn else None) or ""
            if text:
                truncated = len(text) > result_chars
                result = text[:result_chars]
        if r.started_at and r.ended_at:
            durations.append(r.ended_at - r.started_at)
        out.append(
            RunOut(
                id=r.run_id, template=r.template, agent=names.get(r.agent_id or ""), status=r.status,
                wave=wave_of[r.run_id], depends_on=r.depends_on, result=result, truncated=truncated, reason=r.reason,
            )
        )  # fmt: skip
    end = batch.ended_at or time.time()
    return BatchOut(
        batch=batch_id,
        status=batch.status,
        runs=out,
        wall_s=round(end - batch.created_at, 1),
        sum_run_s=round(sum(durations), 1) if durations else None,
    )


async def read_events(fleet: Fleet, agent: AgentRow, turn: TurnRow) -> list[Event]:
    """Re-read a turn's transcript through its runner's parser (finished turns get their closing events too)."""
    files = fleet.turn_files(agent.id, turn.n)
    req = fleet.turn_request(agent, turn)
    parser = fleet.runner(agent.spec.runner).new_parser(req)
    reader = TranscriptReader(files.out, parser)

    def read() -> list[Event]:
        events = reader.read_new()
        if turn.done:
            events.extend(reader.close(turn.exit_code, files.err))
        return events

    return await anyio.to_thread.run_sync(read)


def page(text: str, cursor: int, max_chars: int) -> tuple[str, bool, int | None]:
    chunk = text[cursor : cursor + max_chars]
    end = cursor + len(chunk)
    more = end < len(text)
    return chunk, more, (end if more else None)


async def transcript_text(fleet: Fleet, agent: AgentRow, turn: TurnRow) -> str:
    return render_events(await read_events(fleet, agent, turn))
