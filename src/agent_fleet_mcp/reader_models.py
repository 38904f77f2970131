"""What the read side returns (reader.py): the CLI's report models (also what `--json` prints) and the pure
functions that shape store rows into them and into the tools' rows (schemas.py). No I/O here."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import Field

from agent_fleet_mcp import budgets
from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.schemas import AgentRowOut, BatchOut, Finished, FleetSummary, LimitsOut, Out, Tokens, one_line
from agent_fleet_mcp.store.models import AgentRow, AgentTotals, FleetTotals, TurnRow, TurnUsage

EMPTY_FLEET = "No agents yet. Start the MCP server and create some, or run `agent-fleet demo`."
STALL_AFTER_S = 120.0
CONTEXT_WINDOW = 200_000
FILES_SHOWN = 20  # files read/written listed by get_agent_output and `agent-fleet status AGENT`
RESULT_PREVIEW_CHARS = 400
RESULT_LINE_CHARS = 160  # the one-line result of a finished agent in wait_for_agents
CURSOR_START = "start"  # get_agent_status's cursor of the first page (every live agent, in creation order)
PROMPT_PREVIEW_CHARS = 200

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


class WorkspaceOut(Out):
    """An isolated agent's git worktree (issue 11): where it works, what it started from, what it changed."""

    repo: str = Field(description="the checkout it started from (where merge_agent applies its changes)")
    path: str = Field(description="its worktree")
    branch: str
    base: str = Field(description="the commit it started from (the checkout's state then, uncommitted edits included)")
    files: FileList = Field(description="changed files vs the base, as of its last turn")
    merged_at: float | None = None


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
    workspace: WorkspaceOut | None = Field(default=None, description="its git worktree (None: it edits cwd in place)")


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


@dataclass(frozen=True)
class EndedOnDisk:
    """The outcome of a turn whose process ended while no server recorded it, as the server will record it."""

    status: str
    error: str | None
    exit_code: int | None
    ended_at: float
    elapsed_s: float | None


# -- shaping rows ----------------------------------------------------------------------------------------------


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


def turn_info(t: TurnRow) -> TurnInfo:
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


def union(lists: Iterable[list[str]]) -> list[str]:
    return list(dict.fromkeys(p for paths in lists for p in paths))


def unpriced(row: AgentRowOut) -> bool:
    ran = row.turn_status not in (None, "queued") or row.tokens.input + row.tokens.output > 0
    return row.cost_usd is None and ran


def page(text: str, cursor: int, max_chars: int) -> tuple[str, bool, int | None]:
    chunk = text[cursor : cursor + max_chars]
    end = cursor + len(chunk)
    more = end < len(text)
    return chunk, more, (end if more else None)


def add_turn(group: CostGroup, r: TurnUsage) -> None:
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


def by_cost(groups: Iterable[CostGroup]) -> list[CostGroup]:
    return sorted(groups, key=lambda g: (-g.cost_usd, -(g.tokens.input + g.tokens.output), g.name))


def finished_line(agent: AgentRow, turn: TurnRow | None) -> Finished:
    """A finished agent as wait_for_agents shows it: its latest turn's status and the result (or error) on one line."""
    if turn is None:
        return Finished(name=agent.name, status=agent.status, result=one_line(agent.last_error, RESULT_LINE_CHARS))
    text = turn.result_text if turn.status == "succeeded" else (turn.error or turn.reason)
    return Finished(name=agent.name, status=turn.status, turn=turn.n, result=one_line(text, RESULT_LINE_CHARS))


def live_by_status(t: FleetTotals) -> dict[str, int]:
    counts = {"running": t.running, "idle": t.idle, "failed": t.failed, "stopped": t.stopped}
    return {"queued": t.agents - sum(counts.values()), **counts}


def parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    """A status cursor (``next_cursor``: creation time/agent id of the last row shown) read back."""
    if cursor is None or cursor == CURSOR_START:
        return None
    created, sep, aid = cursor.partition("/")
    try:
        if not sep or not aid:
            raise ValueError(cursor)
        return float(created), aid
    except ValueError:
        raise InvalidRequest(
            f"cursor {cursor!r} is not one get_agent_status returned; pass its next_cursor as is, or leave cursor out"
        ) from None


# -- worktree changes (issue 11) -------------------------------------------------------------------------------


def changes_summary(added: int, removed: int, files: int) -> str | None:
    """'+12 -3, 2 files' (None without changed files): the status row's ``changes``."""
    if not files:
        return None
    return f"+{added} -{removed}, {files} file{'s' if files != 1 else ''}"


def overlaps(changed: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Agent name -> the other agents whose changed files intersect its own (sorted; agents without an overlap are
    left out). Pure, on the stored changed-file lists: status makes no git call per row."""
    by_file: dict[str, set[str]] = {}
    for name, files in changed.items():
        for f in files:
            by_file.setdefault(f, set()).add(name)
    out: dict[str, set[str]] = {}
    for names in by_file.values():
        if len(names) > 1:
            for n in names:
                out.setdefault(n, set()).update(names - {n})
    return {n: sorted(others) for n, others in sorted(out.items())}


def caused_by(conflicts: Iterable[str], changed: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Conflicting file -> the agents (of ``changed``: other live agents' stored changed files) that changed it too."""
    sets = {name: set(files) for name, files in changed.items()}
    out: dict[str, list[str]] = {}
    for f in conflicts:
        names = sorted(n for n, files in sets.items() if f in files)
        if names:
            out[f] = names
    return out


def workspace_out(agent: AgentRow) -> WorkspaceOut | None:
    ws = agent.workspace
    if ws is None:
        return None
    files = list(agent.changes.files) if agent.changes is not None else []
    return WorkspaceOut(
        repo=ws.repo, path=ws.path, branch=ws.branch, base=ws.base,
        files=FileList(total=len(files), shown=files[:FILES_SHOWN]), merged_at=agent.merged_at,
    )  # fmt: skip
