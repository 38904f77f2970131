"""The server's work per wave, counted rather than timed: the trips to the store's connection thread (by store
method and caller), the trips to worker threads, the change notifications, the batch passes, the tick passes. Wall
times on a shared 2-core box move by +-0.1 s from run to run; these counts do not, so a change that saves work shows
here even when the walls cannot tell.

    uv run python bench/wave_work.py [--runs 20] [--latency 3] [--repeat 3]

Runs ``bench/turn_start.py``'s wave (N anthropic turns through one run_agents call, the scripted model in its own
process, the fork server on) and counts what happens inside the run_agents call, averaged over the repeats.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import sys
from collections.abc import Callable
from typing import Any

import aiosqlite.core
import anyio
import anyio.to_thread
import turn_start

from agent_fleet_mcp import batches, supervisor
from agent_fleet_mcp.runners import started
from agent_fleet_mcp.store.sqlite_base import SqliteConnection

counts: collections.Counter[str] = collections.Counter()
db_callers: collections.Counter[str] = collections.Counter()
counting = False


def _caller_of_store() -> str:
    """``store_method <- its caller`` for the store call on this stack (the store's private helpers skipped)."""
    f = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
    while f is not None:
        if "/store/" in f.f_code.co_filename and not f.f_code.co_name.startswith("_") and f.f_code.co_name != "tx":
            g = f.f_back
            while g is not None and ("/store/" in g.f_code.co_filename or "asyncio" in g.f_code.co_filename):
                g = g.f_back
            return f"{f.f_code.co_name} <- {g.f_code.co_name if g else '?'}"
        f = f.f_back
    return "?"


def _count(owner: Any, name: str, key: str, *, where: Callable[[], str] | None = None) -> None:
    real = getattr(owner, name)
    if inspect.iscoroutinefunction(real):

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            if counting:
                counts[key] += 1
                if where is not None:
                    db_callers[where()] += 1
            return await real(*args, **kwargs)

        setattr(owner, name, counted_async)
    else:

        def counted(*args: Any, **kwargs: Any) -> Any:
            if counting:
                counts[key] += 1
            return real(*args, **kwargs)

        setattr(owner, name, counted)


_count(aiosqlite.core.Connection, "_execute", "store thread trips", where=_caller_of_store)
_count(SqliteConnection, "_point", "store point reads (event loop)", where=_caller_of_store)
_count(anyio.to_thread, "run_sync", "worker thread trips")
_count(supervisor.Supervisor, "notify", "change notifications")
_count(supervisor.Supervisor, "_adopt_running", "tick passes")
_count(batches.BatchEngine, "advance", "batch passes")
_count(started, "read", "started-marker reads")
_real_run_batch = turn_start.run_batch


async def _counted_run_batch(c: Any, body: list[dict[str, str]]) -> None:
    global counting
    counting = True
    try:
        await _real_run_batch(c, body)
    finally:
        counting = False


turn_start.run_batch = _counted_run_batch


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--latency", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    for _ in range(a.repeat):
        await turn_start.one(a.runs, a.latency, 3.0)
    n = a.repeat
    print(f"{a.runs} anthropic runs x {a.latency:g} s, one run_agents call; per wave, mean of {n}")
    print(f"| {'what':<40} | {'per wave':>8} | {'per turn':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 10}|")
    for key, v in sorted(counts.items()):
        print(f"| {key:<40} | {v / n:8.1f} | {v / n / a.runs:8.2f} |")
    print("store trips and point reads by store method <- caller:")
    for where, v in db_callers.most_common():
        print(f"  {v / n:7.1f}  {where}")


if __name__ == "__main__":
    anyio.run(main)
