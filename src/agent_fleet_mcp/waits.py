"""The orchestrator's sleep: block until agents (or a batch) finish or a timeout passes, reporting progress.
Orchestration: it advances batches and waits on the fleet's changes; every read goes through ``fleet.reader``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.models import AgentRow

MAX_WAIT_S = 45.0
PROGRESS_EVERY_S = 3.0
POLL_S = 1.0

Progress = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class WaitResult:
    done: bool
    finished: list[str]
    still_running: list[str]
    waited_s: float
    agents: list[AgentRow]


async def _noop(progress: float, total: float | None, message: str) -> None:
    return None


@dataclass(frozen=True)
class _Snapshot:
    finished: list[str]
    pending: list[str]
    busy: list[str]  # agent ids still working (their activity is read only when progress is reported)


async def _look(fleet: Fleet, batch: str | None, run_ids: list[str], targets: list[AgentRow]) -> _Snapshot:
    """One look at the batch's runs (advancing it first; ``run_ids``: all of them, in order) or at the target
    agents. A batch is looked at through its open runs only (one narrow read): a look comes with every change."""
    reader = fleet.reader
    if batch is not None:
        open_runs = await fleet.batches.advance(batch)  # read by its last pass, which changed nothing after
        if open_runs is None:
            open_runs = await reader.open_runs(batch)
        still_open = {r.run_id for r in open_runs}
        return _Snapshot(
            [i for i in run_ids if i not in still_open], [i for i in run_ids if i in still_open],
            [r.agent_id for r in open_runs if r.status == "running" and r.agent_id],
        )  # fmt: skip
    busy_ids = await reader.busy([a.id for a in targets])
    return _Snapshot(
        [a.name for a in targets if a.id not in busy_ids], [a.name for a in targets if a.id in busy_ids],
        [a.id for a in targets if a.id in busy_ids],
    )  # fmt: skip


async def wait_for(
    fleet: Fleet,
    *,
    agents: Sequence[str] | None = None,
    batch: str | None = None,
    until: Literal["all", "any"] = "all",
    timeout_s: float = 30.0,
    progress: Progress = _noop,
) -> WaitResult:
    reader = fleet.reader
    timeout_s = max(0.0, min(float(timeout_s), MAX_WAIT_S))
    start = time.monotonic()
    run_ids: list[str] = []
    if batch is not None:
        run_ids = [r.run_id for r in await reader.batch_runs(batch)]  # NotFound for a bad id
        targets: list[AgentRow] = []
    elif agents:
        targets = [await reader.get_agent(a) for a in dict.fromkeys(agents)]
    else:
        targets = await reader.list_agents()
    initially_busy: set[str] | None = None
    last_progress = start - PROGRESS_EVERY_S  # report once right away when it has to wait
    while True:
        mark = fleet.change_mark()  # a change made while looking wakes the sleep below at once
        look = await _look(fleet, batch, run_ids, targets)
        if initially_busy is None:
            initially_busy = set(look.pending)
        if until == "all":
            met = not look.pending
        else:  # any: one of those busy at the start finished (or nothing was busy)
            met = not initially_busy or any(x not in look.pending for x in initially_busy)
        elapsed = time.monotonic() - start
        if met or elapsed >= timeout_s:
            fresh = await reader.agents_by_id(a.id for a in targets)
            return WaitResult(met, look.finished, look.pending, round(elapsed, 1), fresh)
        if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            total = len(look.finished) + len(look.pending)
            activity = await reader.latest_activity(look.busy)
            msg = f"{len(look.finished)}/{total} done" + (f" — {activity}" if activity else "")
            await progress(float(len(look.finished)), float(total), msg)
            last_progress = time.monotonic()
        await fleet.changed(min(POLL_S, timeout_s - elapsed), since=mark)
