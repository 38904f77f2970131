"""The store's vocabulary: status literals and the rows it returns (plain frozen dataclasses), no SQL here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, get_args

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.worktrees import Changes, Workspace

AgentStatus = Literal["queued", "running", "idle", "failed", "stopped", "deleted"]
TurnStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost"]
TurnEnd = Literal["succeeded", "failed", "cancelled", "lost"]  # the statuses that close a turn
RunStatus = Literal["waiting", "running", "succeeded", "failed"]  # a run whose dependency failed is `failed`
RunEnd = Literal["succeeded", "failed"]
BatchStatus = Literal["running", "succeeded", "failed"]

AGENT_STATUSES: tuple[AgentStatus, ...] = get_args(AgentStatus)
TURN_STATUSES: tuple[TurnStatus, ...] = get_args(TurnStatus)
TURN_DONE: frozenset[TurnStatus] = frozenset(get_args(TurnEnd))
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
RUN_DONE: frozenset[RunStatus] = frozenset(get_args(RunEnd))
BATCH_STATUSES: tuple[BatchStatus, ...] = get_args(BatchStatus)


@dataclass(frozen=True)
class AgentRow:
    id: str
    name: str
    status: AgentStatus
    spec: AgentSpec
    spec_hash: str
    cwd: str
    idempotency_key: str | None
    session_id: str | None
    last_error: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None
    parent_id: str | None = None  # the agent whose turn created this one (through a nested server)
    root_id: str | None = None  # the first agent of its delegation tree (itself when a host created it)
    depth: int = 1  # 1 = created by a host; a child of a depth-d agent has depth d + 1
    batch_id: str | None = None  # the run_agents batch it was created for
    # Its git worktree (None: it edits ``cwd`` in place; with one, ``cwd`` is ``workspace.cwd``), its changes
    # against the worktree's base as of its last turn's commit (None: none recorded yet), and when merge_agent
    # last merged them into the user's checkout.
    workspace: Workspace | None = None
    changes: Changes | None = None
    merged_at: float | None = None

    @property
    def origin_cwd(self) -> str:
        """The directory the agent was created for: its cwd in the user's checkout when it has a worktree."""
        ws = self.workspace
        return self.cwd if ws is None else ws.repo if ws.rel in ("", ".") else f"{ws.repo}/{ws.rel}"

    @classmethod
    def from_row(cls, r: Any) -> AgentRow:
        keys = r.keys()
        return cls(
            id=r["id"],
            name=r["name"],
            status=r["status"],
            spec=AgentSpec.model_validate_json(r["spec_json"]),
            spec_hash=r["spec_hash"],
            cwd=r["cwd"],
            idempotency_key=r["idempotency_key"],
            session_id=r["session_id"],
            last_error=r["last_error"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            deleted_at=r["deleted_at"],
            parent_id=r["parent_id"] if "parent_id" in keys else None,
            root_id=r["root_id"] if "root_id" in keys else None,
            depth=int(r["depth"]) if "depth" in keys else 1,
            batch_id=r["batch_id"] if "batch_id" in keys else None,
            workspace=workspace_from_json(r["workspace_json"]) if "workspace_json" in keys else None,
            changes=changes_from_json(r["changes_json"]) if "changes_json" in keys else None,
            merged_at=r["merged_at"] if "merged_at" in keys else None,
        )


def workspace_to_json(ws: Workspace | None) -> str | None:
    if ws is None:
        return None
    return json.dumps({"repo": ws.repo, "path": ws.path, "branch": ws.branch, "base": ws.base, "rel": ws.rel})


def workspace_from_json(text: str | None) -> Workspace | None:
    if not text:
        return None
    d = json.loads(text)
    return Workspace(repo=d["repo"], path=d["path"], branch=d["branch"], base=d["base"], rel=d["rel"])


def changes_to_json(c: Changes | None) -> str | None:
    if c is None:
        return None
    return json.dumps({"added": c.added, "removed": c.removed, "files": list(c.files)})


def changes_from_json(text: str | None) -> Changes | None:
    if not text:
        return None
    d = json.loads(text)
    return Changes(added=int(d["added"]), removed=int(d["removed"]), files=tuple(str(f) for f in d["files"]))


@dataclass(frozen=True)
class TurnRow:
    agent_id: str
    n: int
    status: TurnStatus
    reason: str | None
    prompt: str
    runner: str
    model: str | None
    pid: int | None
    proc_start: float | None
    out_path: str | None
    queued_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    context_tokens: int | None
    tool_calls: int
    activity: str | None
    last_event_at: float | None
    reads: list[str]
    writes: list[str]
    result_text: str | None
    is_error: bool | None
    error: str | None
    claimed_by: str | None = None  # the server that claimed the turn (pid@create_time), see runners/started.py

    @property
    def done(self) -> bool:
        return self.status in TURN_DONE

    @classmethod
    def from_row(cls, r: Any) -> TurnRow:
        d = dict(r)
        d["reads"] = json.loads(d.pop("reads_json") or "[]")
        d["writes"] = json.loads(d.pop("writes_json") or "[]")
        d["is_error"] = None if d["is_error"] is None else bool(d["is_error"])
        return cls(**d)


@dataclass(frozen=True)
class RunRow:
    batch_id: str
    run_id: str
    seq: int
    template: str
    input: str
    depends_on: list[str]
    cwd: str
    agent_id: str | None
    status: RunStatus
    reason: str | None
    started_at: float | None
    ended_at: float | None
    isolation: str | None = None  # worktree | none | None (automatic)

    @classmethod
    def from_row(cls, r: Any) -> RunRow:
        d = dict(r)
        d["depends_on"] = json.loads(d.pop("depends_on_json") or "[]")
        return cls(**d)


@dataclass(frozen=True)
class OpenRun:
    """A waiting or running run, with the status of its agent's turn 1 (``Store.open_runs``)."""

    run_id: str
    status: RunStatus
    turn_status: TurnStatus | None
    depends_on: tuple[str, ...] = ()
    agent_id: str | None = None

    @property
    def ended(self) -> bool:
        """A running run whose turn is over, or gone with its agent: the batch's pass has to close it."""
        return self.status == "running" and (self.turn_status is None or self.turn_status in TURN_DONE)


@dataclass(frozen=True)
class BatchRow:
    id: str
    created_at: float
    ended_at: float | None
    status: BatchStatus
    idempotency_key: str | None = None
    request_hash: str | None = None
    budget_usd: float | None = None

    @classmethod
    def from_row(cls, r: Any) -> BatchRow:
        return cls(**dict(r))


@dataclass(frozen=True)
class RunSpec:
    """One run of a new batch, as ``insert_batch`` stores it (validated by batches.py)."""

    run_id: str
    template: str
    input: str
    depends_on: list[str]
    cwd: str
    isolation: str | None = None  # worktree | none | None (automatic)


@dataclass(frozen=True)
class TurnStatsUpdate:
    """What a turn has used and done so far, written over the turn's stats columns (``update_turn_stats``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    context_tokens: int | None = None
    tool_calls: int = 0
    activity: str | None = None
    last_event_at: float | None = None
    reads: list[str] = field(default_factory=list[str])
    writes: list[str] = field(default_factory=list[str])
    model: str | None = None


@dataclass(frozen=True)
class AgentTotals:
    """An agent's turns summed (``agent_totals``). ``cost_usd`` sums the priced turns (None when none is priced);
    ``unpriced`` counts turns that used tokens but have no cost."""

    turns: int = 0
    queued: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    unpriced: int = 0
    tool_calls: int = 0
    first_started: float | None = None
    last_ended: float | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class TurnUsage(TypedDict):
    """One turn's tokens and cost with its agent's name and status (``turn_usage``, the CLI's cost report)."""

    agent_id: str
    agent: str
    agent_status: AgentStatus
    n: int
    status: TurnStatus
    runner: str
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    tool_calls: int
    queued_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True)
class FleetTotals:
    """The live fleet summed (``fleet_totals``): agents by status, queued turns, tokens, and the cost of the agents
    whose every turn is priced (each agent's sum rounded to 6 places, as its status row shows it)."""

    agents: int = 0
    running: int = 0
    idle: int = 0
    failed: int = 0
    stopped: int = 0
    queued: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
