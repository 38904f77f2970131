"""What a turn's follower holds between two looks at it (``Supervisor`` follows each running turn), and its reads of
the turn's transcript."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import anyio

from agent_fleet_mcp import budgets
from agent_fleet_mcp.events import Event
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.store.models import AgentRow, TurnRow
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_stats import TurnStats


@dataclass(frozen=True)
class Known:
    """A turn just spawned here, as its spawn knows it: its agent, its row with the process recorded, and what the
    agent had spent before it."""

    agent: AgentRow
    turn: TurnRow
    spent: budgets.Spent


@dataclass
class Followed:
    """One running turn as its follower sees it between two polls."""

    agent: AgentRow
    turn: TurnRow  # replaced when the turn's process turns out to be another one (adopted)
    files: proc.TurnFiles
    reader: TranscriptReader
    limits: budgets.Limits
    spent_before: budgets.Spent
    session_saved: str | None
    last_check: float
    stats: TurnStats = field(default_factory=TurnStats)
    shared: budgets.Stop | None = None  # the fleet's or the batch's budget, seen spent
    breach_at: float | None = None
    last_flush: float = 0.0
    seen_alive: bool = False

    @property
    def pid(self) -> int:
        return self.turn.pid or 0


async def read_new(f: Followed) -> list[Event]:
    """The turn's new transcript events. Whether the file grew is looked at here (one stat); only new bytes go to a
    worker thread: 200 running turns, each polled several times a second, were thousands of thread hops a second."""
    try:
        if os.stat(f.files.out).st_size <= f.reader.offset:
            return []
    except FileNotFoundError:
        return []
    return await anyio.to_thread.run_sync(f.reader.read_new)


def tokens_of(stats: TurnStats) -> int:
    return stats.input_tokens + stats.output_tokens + stats.cache_read_tokens + stats.cache_write_tokens
