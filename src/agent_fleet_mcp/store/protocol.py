"""The ``Store`` protocol: what the fleet, the batch engine, the budgets and the read side need from storage.

``SqliteStore`` (store/sqlite.py) implements it; a second implementation (e.g. PostgreSQL, so several servers on
several machines share one fleet) must keep the contract in docs/store.md. Each method is one atomic step: a
decision that reads and writes several rows (claim a turn under the fleet cap, close a turn, insert under a unique
key) is a single method, never a read here and a write there. Constraint violations raise our errors
(``AlreadyExists``, ``LimitReached``, ``Conflict``), never a driver's. Timestamps are epoch seconds (float).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.models import (
    AgentRow,
    AgentStatus,
    AgentTotals,
    BatchRow,
    BatchStatus,
    FleetTotals,
    OpenRun,
    RunEnd,
    RunRow,
    RunSpec,
    TurnEnd,
    TurnRow,
    TurnStatsUpdate,
    TurnStatus,
    TurnUsage,
)
from agent_fleet_mcp.worktrees import Changes, Workspace


class Store(Protocol):
    # -- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, creating the fleet's schema if needed and applying pending migrations."""
        ...

    async def open_existing(self) -> bool:
        """Connect read-only to an existing fleet (the CLI); False when there is none. Never creates one."""
        ...

    async def close(self) -> None: ...

    # -- agents ----------------------------------------------------------------------------------------------
    async def insert_agent(
        self,
        *,
        id: str,
        name: str,
        spec: AgentSpec,
        spec_hash: str,
        cwd: str,
        idempotency_key: str | None,
        parent_id: str | None = None,
        root_id: str | None = None,
        depth: int = 1,
        batch_id: str | None = None,
        max_tree_agents: int | None = None,
        workspace: Workspace | None = None,
        prompt: str | None = None,
    ) -> AgentRow:
        """Insert a live (``idle``) agent. One live agent per name and per idempotency key, fleet-wide: a clash
        raises ``AlreadyExists``. With ``max_tree_agents``, a tree (``root_id``) already that big raises
        ``LimitReached`` -- the count and the insert are one atomic step. ``workspace``: its git worktree (then
        ``cwd`` is ``workspace.cwd``). ``prompt``: its first turn, queued in the same transaction (the agent is
        then ``queued``): a crash can never leave the agent without the turn it was created for."""
        ...

    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow | None:
        """By id, else by name among live agents (and the newest deleted one with ``include_deleted``)."""
        ...

    async def find_by_idempotency_key(self, key: str) -> AgentRow | None:
        """The live agent created under ``key``."""
        ...

    async def list_agents(self, *, include_deleted: bool = False) -> list[AgentRow]:
        """Ordered by creation time, then id."""
        ...

    async def status_agents(self, *, limit: int) -> list[AgentRow]:
        """At most ``limit`` live agents: running, queued and failed first, then the rest, each group most recently
        changed (``updated_at``) first. Its cost must not grow with the fleet (an index on status and time)."""
        ...

    async def page_agents(
        self, *, statuses: Sequence[AgentStatus], after: tuple[float, str] | None, limit: int
    ) -> list[AgentRow]:
        """At most ``limit`` agents with one of ``statuses``, in creation order (``created_at``, then id), starting
        after the agent whose (created_at, id) is ``after``: a stable order to page through, however agents change."""
        ...

    async def fleet_totals(self) -> FleetTotals:
        """The live fleet summed: agents by status, queued turns, tokens, and cost (see ``FleetTotals``)."""
        ...

    async def change_stamp(self) -> tuple[int, int]:
        """A value that differs whenever anything in the store changed since it was last read (by any process
        sharing it); equal values mean nothing changed. One cheap read: pollers skip their work on an equal one."""
        ...

    async def mark_queued_unless_running(self, agent_id: str) -> None:
        """Set a live agent ``queued`` unless one of its turns is running (atomic with concurrent claims)."""
        ...

    async def set_session_id(self, agent_id: str, session_id: str) -> None: ...

    async def set_changes(self, agent_id: str, changes: Changes) -> None:
        """Record the agent's changes against its worktree's base (after each turn's commit); deleted agents too."""
        ...

    async def set_merged(self, agent_id: str, at: float) -> None:
        """Record that merge_agent merged the agent's changes into the user's checkout at ``at``."""
        ...

    async def isolated_agents(self) -> list[AgentRow]:
        """Every agent with a worktree, deleted ones too (reconcile and doctor match them with the worktrees on
        disk), ordered by creation time."""
        ...

    async def mark_deleted(self, agent_id: str) -> None:
        """Soft delete: status ``deleted``; the name and idempotency key become free."""
        ...

    async def purge_agent(self, agent_id: str) -> None:
        """Remove the agent and its turns; runs that named it keep their row with no agent."""
        ...

    # -- turns -----------------------------------------------------------------------------------------------
    async def insert_turn(self, *, agent_id: str, prompt: str, runner: str, model: str | None) -> TurnRow:
        """Queue the agent's next turn: number = its highest + 1, allocated atomically."""
        ...

    async def get_turn(self, agent_id: str, n: int) -> TurnRow | None: ...

    async def turns_of(self, agent_id: str) -> list[TurnRow]:
        """Ordered by turn number."""
        ...

    async def latest_turns(self, agent_ids: Sequence[str]) -> dict[str, TurnRow]:
        """Each agent's highest-numbered turn (agents without turns are absent)."""
        ...

    async def first_turns(self, agent_ids: Sequence[str]) -> dict[str, TurnRow]:
        """Each agent's turn 1 (a batch run's turn), in one read (agents without turns are absent)."""
        ...

    async def turns_with_status(self, *statuses: TurnStatus) -> list[TurnRow]:
        """Fleet-wide, oldest queued first (then agent id, turn number): the dispatch order."""
        ...

    async def running_turn_pids(self) -> list[tuple[str, int, int | None]]:
        """``(agent id, turn number, pid)`` of every running turn, in the order of ``turns_with_status``: the
        supervisor's tick looks at them all, and building every row was most of its cost with 200 running."""
        ...

    async def budgeted_batches_running(self) -> list[str]:
        """Ids of the batches with a ``budget_usd`` that an agent with a running turn belongs to."""
        ...

    async def count_turns(self, agent_id: str, *statuses: TurnStatus) -> int: ...

    async def count_running(self) -> int:
        """Turns running fleet-wide: what the cap of ``claim_queued`` counts. A point read, whatever is queued."""
        ...

    async def claim_turn(self, agent_id: str, n: int, *, max_running: int, claimer: str | None = None) -> bool:
        """Atomically: queued -> running if the agent has no running turn and fewer than ``max_running`` turns
        run fleet-wide (or an ancestor of the agent has a running turn), and set the agent ``running``. True
        for exactly one of any number of concurrent callers on any number of servers."""
        ...

    async def claim_queued(self, *, max_running: int, claimer: str | None = None, limit: int = 16) -> list[TurnRow]:
        """Claim up to ``limit`` of the next claimable queued turns, oldest first, each exactly as ``claim_turn``
        would (one running turn per agent, the fleet-wide cap, the ancestor exemption), and return them (now
        running). Queued turns of deleted agents are cancelled. Its cost must not grow with the queue when nothing
        can start (the dispatcher calls it every tick): PostgreSQL picks with ``FOR UPDATE SKIP LOCKED`` after
        taking the cap's lock."""
        ...

    async def set_turn_process(
        self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str, model: str | None
    ) -> bool:
        """Record the process just spawned for a claimed turn; False (nothing recorded) when the turn is no longer
        running: it was closed while its process was being spawned, and the caller stops that process."""
        ...

    async def adopt_turn_process(self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str) -> bool:
        """Record the process of a running turn if it is not recorded yet; True when the row changed."""
        ...

    async def requeue_turn(self, agent_id: str, n: int) -> None:
        """running -> queued for a claimed turn whose process was never recorded."""
        ...

    async def update_turn_stats(self, agent_id: str, n: int, stats: TurnStatsUpdate) -> None:
        """Overwrite the turn's usage columns with ``stats``."""
        ...

    async def finish_turn(
        self,
        agent_id: str,
        n: int,
        *,
        status: TurnEnd,
        reason: str | None = None,
        exit_code: int | None = None,
        result_text: str | None = None,
        is_error: bool | None = None,
        error: str | None = None,
        agent_status: AgentStatus | None = None,
        ended_at: float | None = None,
        stats: TurnStatsUpdate | None = None,
    ) -> bool:
        """Close a queued or running turn and set its (live) agent's status, atomically. The first closer wins:
        True for exactly one caller; later ones change nothing and get False. ``stats`` (the turn's usage columns,
        as ``update_turn_stats`` writes them) are written in the same transaction, by every caller."""
        ...

    # -- usage -----------------------------------------------------------------------------------------------
    async def agent_totals(self, agent_ids: Sequence[str]) -> dict[str, AgentTotals]:
        """Per agent with turns (others absent)."""
        ...

    async def spend_since(self, since: float) -> float:
        """Cost of every turn (deleted agents' too) started (else queued) at or after ``since``."""
        ...

    async def batch_spend(self, batch_id: str) -> float:
        """Cost of every turn of the agents created for the batch."""
        ...

    async def turn_usage(self, *, since: float | None = None) -> list[TurnUsage]:
        """Every turn (deleted agents' too) started (else queued) at or after ``since``, oldest first."""
        ...

    # -- batches and runs ------------------------------------------------------------------------------------
    async def insert_batch(
        self,
        batch_id: str,
        runs: Sequence[RunSpec],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        budget_usd: float | None = None,
    ) -> None:
        """Insert a ``running`` batch and its ``waiting`` runs in one transaction. A taken idempotency key (or
        batch id) raises ``AlreadyExists`` and inserts nothing."""
        ...

    async def find_batch_by_key(self, idempotency_key: str) -> BatchRow | None: ...

    async def get_batch(self, batch_id: str) -> BatchRow | None: ...

    async def list_batches(self, *, status: BatchStatus | None = None) -> list[BatchRow]:
        """Ordered by creation time."""
        ...

    async def open_runs(self, batch_id: str) -> list[OpenRun]:
        """The batch's waiting and running runs, each with the status of its agent's turn 1 (None when there is no
        such turn): one narrow read, what a batch's pass needs to see whether anything is left to do."""
        ...

    async def batch_agent_names(self, batch_id: str) -> dict[str, str]:
        """The names of the agents created for a batch's runs (deleted ones too), by agent id."""
        ...

    async def runs_of(self, batch_id: str) -> list[RunRow]:
        """In the order the batch listed them."""
        ...

    async def start_run(self, batch_id: str, run_id: str, *, agent_id: str) -> bool:
        """waiting -> running with the agent created for it; True when this call moved it."""
        ...

    async def finish_run(self, batch_id: str, run_id: str, *, status: RunEnd, reason: str | None = None) -> bool:
        """Close a waiting or running run; the first closer wins (True), later calls change nothing."""
        ...

    async def finish_batch(self, batch_id: str, status: BatchStatus) -> None:
        """Close a running batch (a closed one stays as it is)."""
        ...
