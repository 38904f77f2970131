"""Typed outputs of the MCP tools (structured content). Compact by design: the orchestrator's context is precious."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_fleet_mcp.store.models import AgentStatus, BatchStatus, RunStatus, TurnStatus


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskAgentInfo(Out):
    name: str
    description: str
    tags: list[str]
    runner: str
    model: str | None
    permission: str
    concurrency: str


class TaskAgentList(Out):
    agents: list[TaskAgentInfo]
    problems: list[str] = Field(
        default_factory=list, description="catalog files that failed to load; models at or near end of life"
    )


class Tokens(Out):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


class LimitsOut(Out):
    """The agent's effective limits (its own, else the fleet's defaults) and what is left of its budgets."""

    max_turns: int = Field(description="model requests per turn (command agents: turns over the agent's life)")
    timeout_s: float = Field(description="wall-clock limit of one turn")
    max_cost_usd: float | None = Field(None, description="cost limit of the agent's whole life (None: unmetered)")
    max_tokens: int | None = Field(None, description="token limit (input+output+cache) of the agent's whole life")
    cost_left_usd: float | None = None
    tokens_left: int | None = None


class AgentRowOut(Out):
    name: str
    status: AgentStatus
    runner: str
    model: str | None
    turn: int | None = Field(None, description="latest turn number")
    turn_status: TurnStatus | None = None
    activity: str | None = Field(None, description="last tool call, 'thinking', 'done' ...")
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


class FleetSummary(Out):
    agents: int
    running: int
    queued: int
    idle: int
    failed: int
    stopped: int
    tokens: Tokens
    cost_usd: float


class StatusOut(Out):
    fleet: FleetSummary
    agents: list[AgentRowOut]


class CreateOut(Out):
    agent: AgentRowOut
    created: bool = Field(description="false when an identical agent already existed (retry-safe)")
    turn: int | None = None
    note: str
    warnings: list[str] = Field(default_factory=list, description="e.g. the model nears its end of life")


class CommandOut(Out):
    agent: str
    turn: int
    status: TurnStatus = Field(description="running, or queued behind a running turn / the fleet-wide cap")
    note: str


class WaitOut(Out):
    done: bool = Field(description="true when the `until` condition was met")
    finished: list[str]
    still_running: list[str]
    waited_s: float
    agents: list[AgentRowOut]
    batch: BatchOut | None = None
    note: str


class OutputOut(Out):
    agent: str
    turn: int
    turn_status: TurnStatus
    mode: Literal["result", "tail", "transcript", "diff"]
    text: str
    truncated: bool
    next_cursor: int | None = Field(None, description="pass as cursor to read on")
    total_chars: int
    transcript_path: str | None
    files_read: list[str] = Field(default_factory=list, description="this turn's reads (capped; see reads_total)")
    files_written: list[str] = Field(default_factory=list, description="written/edited (capped)")
    reads_total: int = 0
    writes_total: int = 0


class DeletedAgent(Out):
    name: str
    stopped_turns: int
    branch_kept: str | None = Field(default=None, description="its branch holds unmerged work: kept, and how to use it")


class DeleteOut(Out):
    deleted: list[DeletedAgent]
    purged: bool


class RunOut(Out):
    id: str
    template: str
    agent: str | None = Field(None, description="the agent created for this run (for get_agent_output)")
    status: RunStatus
    wave: int
    depends_on: list[str] = Field(default_factory=list)
    result: str | None = None
    truncated: bool = False
    reason: str | None = None


class BatchOut(Out):
    batch: str
    status: BatchStatus
    runs: list[RunOut]
    wall_s: float | None = None
    sum_run_s: float | None = Field(None, description="sum of run durations; vs wall_s shows parallel savings")


class RunAgentsOut(Out):
    done: bool
    batch: BatchOut
    note: str


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
