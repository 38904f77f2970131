"""Typed outputs of the MCP tools (structured content). Compact by design: the orchestrator's context is precious."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_fleet_mcp.store.models import AgentStatus, BatchStatus, RunStatus, TurnStatus


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def compact(self) -> dict[str, Any]:
        """The structured content a tool returns: nulls, zeros, empty lists and defaults left out (every field that
        can be left out has a default, so the output schema still validates it)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    def render(self) -> str:
        """The text content a tool returns: a few lines for a person (subclasses word it)."""
        return " ".join(f"{k}={v}" for k, v in self.compact().items())


def one_line(text: str | None, chars: int) -> str | None:
    """``text`` on one line (whitespace runs become one space), cut to ``chars`` with an ellipsis; None for none."""
    line = " ".join((text or "").split())
    if not line:
        return None
    return line if len(line) <= chars else line[: chars - 1] + "…"


class TaskAgentInfo(Out):
    name: str
    description: str
    tags: list[str] = Field(default_factory=list)
    runner: str
    model: str | None = None
    permission: str = "readonly"
    concurrency: str = Field(
        default="queue", description="when busy and commanded again: queue (max_queued N) | reject | replace"
    )


class TaskAgentList(Out):
    agents: list[TaskAgentInfo]
    problems: list[str] = Field(
        default_factory=list, description="catalog files that failed to load; models at or near end of life"
    )

    def render(self) -> str:
        lines = [f"{a.name} ({a.runner}{'/' + a.model if a.model else ''}, {a.permission}): {a.description}"
                 for a in self.agents]  # fmt: skip
        return "\n".join(lines + [f"problem: {p}" for p in self.problems]) or "no task agents match"


class Tokens(Out):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


class LimitsOut(Out):
    """The agent's effective limits (its own, else the fleet's defaults) and what is left of its budgets."""

    max_turns: int = Field(description="model requests per turn (command agents: turns over the agent's life)")
    timeout_s: float = Field(description="wall-clock limit of one turn")
    max_cost_usd: float | None = Field(
        default=None, description="cost limit of the agent's whole life (None: unmetered)"
    )
    max_tokens: int | None = Field(
        default=None, description="token limit (input+output+cache) of the agent's whole life"
    )
    cost_left_usd: float | None = None
    tokens_left: int | None = None


class AgentRowOut(Out):
    """An agent's full row: what the CLI and the resources show (the tools show ``AgentLine``)."""

    name: str
    status: AgentStatus
    runner: str
    model: str | None
    turn: int | None = Field(default=None, description="latest turn number")
    turn_status: TurnStatus | None = None
    activity: str | None = Field(default=None, description="last tool call, 'thinking', 'done' ...")
    turns: int = 0
    queued: int = 0
    tool_calls: int = 0
    tokens: Tokens = Tokens()
    cost_usd: float | None = None
    context_pct: float | None = None
    elapsed_s: float | None = None
    idle_s: float | None = None
    stalled: bool = False
    reads: int = 0
    writes: int = 0
    last_error: str | None = None
    limits: LimitsOut | None = None
    changes: str | None = Field(default=None, description="its worktree's changes vs its base: '+12 -3, 2 files'")
    overlaps: list[str] | None = Field(default=None, description="other live agents that changed the same files")


class AgentLine(Out):
    """One agent as the tools show it: a handful of fields, the rest only when not the default. Detail (runner,
    model, turns, tokens, limits ...) only when the agent was asked for by name."""

    name: str
    status: AgentStatus
    activity: str | None = Field(default=None, description="what a running turn is doing (last tool call, 'thinking')")
    turn: int | None = Field(default=None, description="latest turn number")
    cost_usd: float | None = Field(default=None, description="absent: nothing spent, or unpriced (command runners)")
    error: str | None = None
    stalled: bool = Field(default=False, description="running but silent for over 2 minutes")
    context_pct: float | None = None
    queued: int = Field(default=0, description="turns waiting behind the running one")
    changes: str | None = Field(default=None, description="its worktree's changes vs its base: '+12 -3, 2 files'")
    overlaps: list[str] = Field(default_factory=list, description="other live agents that changed the same files")
    turn_status: TurnStatus | None = Field(default=None, description="detail: the latest turn's status")
    runner: str | None = None
    model: str | None = None
    turns: int = 0
    tool_calls: int = 0
    tokens: Tokens | None = None
    elapsed_s: float | None = None
    reads: int = 0
    writes: int = 0
    limits: LimitsOut | None = None


def agent_line(row: AgentRowOut, *, detail: bool = False) -> AgentLine:
    """A full row cut to the tools' line (with ``detail``: also runner, model, turns, tokens, limits ...)."""
    line = AgentLine(
        name=row.name, status=row.status, activity=row.activity if row.status in ("running", "queued") else None,
        turn=row.turn, cost_usd=row.cost_usd or None, error=one_line(row.last_error, 200), stalled=row.stalled,
        context_pct=row.context_pct, queued=row.queued, changes=row.changes, overlaps=row.overlaps or [],
    )  # fmt: skip
    if detail:
        line = line.model_copy(
            update={
                "turn_status": row.turn_status, "runner": row.runner, "model": row.model, "turns": row.turns,
                "tool_calls": row.tool_calls, "tokens": row.tokens, "elapsed_s": row.elapsed_s, "reads": row.reads,
                "writes": row.writes, "limits": row.limits,
            }
        )  # fmt: skip
    return line


class FleetSummary(Out):
    agents: int = 0
    running: int = 0
    queued: int = Field(default=0, description="turns waiting")
    idle: int = 0
    failed: int = 0
    stopped: int = 0
    tokens: Tokens = Tokens()
    cost_usd: float = 0.0


class StatusOut(Out):
    fleet: FleetSummary
    agents: list[AgentLine]
    not_shown: dict[str, int] = Field(
        default_factory=dict, description="agents left out of this answer, by status: page them with status/cursor"
    )
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")
    note: str | None = None

    def render(self) -> str:
        f = self.fleet
        counts = ", ".join(
            f"{n} {s}" for s, n in (("running", f.running), ("idle", f.idle), ("failed", f.failed),
                                    ("stopped", f.stopped)) if n
        )  # fmt: skip
        head = (
            f"fleet: {f.agents} agent(s)"
            + (f" ({counts})" if counts else "")
            + (f", {f.queued} turn(s) queued" if f.queued else "")
            + f", ${f.cost_usd:.4f}"
        )
        lines = [head, *(_line_text(a) for a in self.agents)]
        if self.not_shown:
            lines.append("not shown: " + ", ".join(f"{n} {s}" for s, n in self.not_shown.items()))
        if self.next_cursor:
            lines.append(f"more: cursor={self.next_cursor!r}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _line_text(a: AgentLine) -> str:
    parts = [f"{a.name}: {a.status}"]
    if a.turn is not None:
        parts.append(f"turn {a.turn}" + (f" {a.turn_status}" if a.turn_status else ""))
    if a.activity:
        parts.append(a.activity)
    if a.queued:
        parts.append(f"{a.queued} queued")
    if a.cost_usd:
        parts.append(f"${a.cost_usd:.4f}")
    if a.context_pct:
        parts.append(f"context {a.context_pct:g}%")
    if a.stalled:
        parts.append("STALLED")
    if a.error:
        parts.append(f"error: {a.error}")
    return " · ".join(parts)


class CreateOut(Out):
    agent: AgentLine
    created: bool = Field(description="false when an identical agent already existed (retry-safe)")
    turn: int | None = None
    note: str
    warnings: list[str] = Field(default_factory=list, description="e.g. the model nears its end of life")

    def render(self) -> str:
        return f"{_line_text(self.agent)}\n{self.note}"


class CommandOut(Out):
    agent: str
    turn: int
    status: TurnStatus = Field(description="running, or queued behind a running turn / the fleet-wide cap")
    note: str

    def render(self) -> str:
        return f"{self.agent}: turn {self.turn} {self.status} ({self.note})"


class Finished(Out):
    name: str
    status: TurnStatus | AgentStatus = Field(description="the latest turn's status (the agent's without turns)")
    turn: int | None = None
    result: str | None = Field(
        default=None, description="first line of the result (or the error); get_agent_output has all"
    )


class WaitOut(Out):
    done: bool = Field(description="true when the `until` condition was met")
    finished: list[Finished] = Field(
        default_factory=lambda: list[Finished](), description="agents not busy, latest finished first"
    )
    finished_not_shown: int = Field(
        default=0, description="finished agents left out (wait on them by name to see them)"
    )
    still_running: list[str] = Field(default_factory=list, description="agent names (run ids for a batch)")
    waited_s: float = 0.0
    batch: BatchOut | None = None
    note: str

    def render(self) -> str:
        lines = [f"{'done' if self.done else 'not done'} after {self.waited_s:g} s"]
        lines += [f"{f.name}: {f.status}" + (f" — {f.result}" if f.result else "") for f in self.finished]
        if self.finished_not_shown:
            lines.append(f"(+{self.finished_not_shown} more finished)")
        if self.batch is not None:
            lines += self.batch.lines()
        elif self.still_running:
            lines.append("running: " + ", ".join(self.still_running))
        lines.append(self.note)
        return "\n".join(lines)


class OutputOut(Out):
    agent: str
    turn: int
    turn_status: TurnStatus
    mode: Literal["result", "tail", "transcript", "diff"] = "result"
    text: str
    truncated: bool = False
    next_cursor: int | None = Field(default=None, description="pass as cursor to read on")
    total_chars: int
    transcript_path: str | None = None
    files_read: list[str] = Field(default_factory=list, description="this turn's reads (capped; see reads_total)")
    files_written: list[str] = Field(default_factory=list, description="written/edited (capped)")
    reads_total: int = 0
    writes_total: int = 0

    def render(self) -> str:
        more = f"; more from cursor={self.next_cursor}" if self.next_cursor is not None else ""
        head = f"[{self.agent} turn {self.turn} {self.turn_status}, {self.mode}, {self.total_chars} chars{more}]"
        return f"{head}\n{self.text}"


class DeletedAgent(Out):
    name: str
    stopped_turns: int = 0
    branch_kept: str | None = Field(default=None, description="its branch holds unmerged work: kept, and how to use it")


class DeleteOut(Out):
    deleted: list[DeletedAgent]
    purged: bool = False

    def render(self) -> str:
        names = ", ".join(d.name for d in self.deleted) or "nothing"
        return f"deleted{' and purged' if self.purged else ''}: {names}"


class RunOut(Out):
    id: str
    template: str
    agent: str | None = Field(default=None, description="the agent created for this run (for get_agent_output)")
    status: RunStatus
    wave: int = 0
    depends_on: list[str] = Field(default_factory=list)
    result: str | None = Field(default=None, description="a preview; dependents get the full result through {{id}}")
    truncated: bool = False
    result_chars: int = Field(default=0, description="the full result's length (get_agent_output reads it)")
    reason: str | None = None


class BatchOut(Out):
    batch: str
    status: BatchStatus
    runs: list[RunOut]
    wall_s: float | None = None
    sum_run_s: float | None = Field(default=None, description="sum of run durations; vs wall_s shows parallel savings")

    def lines(self) -> list[str]:
        out = [f"batch {self.batch} {self.status}" + (f" in {self.wall_s:g} s" if self.wall_s is not None else "")]
        for r in self.runs:
            tail = r.result or r.reason or ""
            out.append(f"{r.id} ({r.agent or r.template}): {r.status}" + (f" — {one_line(tail, 120)}" if tail else ""))
        return out


class RunAgentsOut(Out):
    done: bool
    batch: BatchOut
    note: str

    def render(self) -> str:
        return "\n".join([*self.batch.lines(), self.note])


class MergeOut(Out):
    agent: str
    merged: bool = Field(description="false on a conflict, a refusal or a dry run: then nothing changed")
    dry_run: bool
    strategy: Literal["merge", "squash"]
    files: list[str] = Field(default_factory=list, description="the agent's changed files (clean)")
    added: int = 0
    removed: int = 0
    conflicts: list[str] = Field(default_factory=list, description="files that would conflict")
    caused_by: dict[str, list[str]] = Field(
        default_factory=dict, description="conflicting file -> other live agents that changed it too"
    )
    user_edits: list[str] = Field(default_factory=list, description="conflicting files with your uncommitted edits")
    commit: str | None = None
    note: str

    def render(self) -> str:
        """A few lines for a person (the text content, once tools return one): what happened, then each conflict."""
        causes = [f"{path}: also changed by {', '.join(names)}" for path, names in self.caused_by.items()]
        return "\n".join([self.note, *causes])


WaitOut.model_rebuild()
