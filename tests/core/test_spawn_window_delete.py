"""An agent deleted while its turn's process is being spawned, with real processes: the delete finds no pid to
kill (none is recorded yet) and closes the turn; the process the spawn then starts must be stopped at once, not
left to run unsupervised for as long as its program likes (the gate agent waits up to 5 minutes)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

WAIT_S = 60.0  # generous for a busy CI box; a passing test does not wait this long


class HeldSpawn:
    """The real process functions, with each spawn held until ``release`` (the pids it started kept)."""

    def __init__(self) -> None:
        self.in_spawn, self.release = threading.Event(), threading.Event()
        self.pids: list[int] = []

    def spawn(self, plan: Any, files: proc.TurnFiles) -> proc.Spawned:
        self.in_spawn.set()
        self.release.wait(WAIT_S)
        got = proc.spawn(plan, files)
        self.pids.append(got.pid)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(proc, name)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_process_spawned_for_a_turn_deleted_meanwhile_is_stopped(settings: Settings, tmp_path: Path) -> None:
    held = HeldSpawn()
    never = tmp_path / "never-opened"  # the gate's file: the program runs until it exists, which it never will
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store, processes=held)  # pyright: ignore[reportArgumentType]
        async with fleet.running():
            errors: list[Exception] = []

            async def create() -> None:
                try:
                    await fleet.create_agent(name="late", template="gate", prompt=str(never))
                except Exception as exc:  # looked at last: the process first
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                try:
                    with anyio.fail_after(WAIT_S):
                        while not held.in_spawn.is_set():
                            await anyio.sleep(0.01)
                    await fleet.delete_agents("late")
                finally:
                    held.release.set()
            agent = await fleet.get_agent("late", include_deleted=True)
            turn = await store.get_turn(agent.id, 1)
            assert turn is not None and turn.status == "cancelled", turn
            [pid] = held.pids
            try:
                with anyio.fail_after(WAIT_S):
                    while not gone(pid):
                        await anyio.sleep(0.02)
            finally:  # a failing run leaves no gate program behind for 5 minutes
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            assert errors == []  # the create that lost the race to the delete says what it made, no NotFound
