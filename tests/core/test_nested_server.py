"""A server started inside an agent (AGENT_FLEET_DEPTH > 0) only records agents and turns; the host's servers start,
follow and stop them. Inside a contained turn the host's pids mean nothing, so a nested server that judged them
would close live turns as lost (and one that spawned would tie its sub-agents to its own namespace)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.store.models import TurnRow
from agent_fleet_mcp.store.sqlite import SqliteStore

from .helpers import call

pytestmark = pytest.mark.anyio


async def _turn(settings: Settings, name: str) -> TurnRow:
    async with SqliteStore(settings.db_path) as store:
        agent = await store.get_agent(name, include_deleted=True)
        assert agent is not None
        turn = await store.get_turn(agent.id, 1)
        assert turn is not None
        return turn


async def _until(
    settings: Settings, name: str, ok: Callable[[TurnRow], bool], what: str, timeout_s: float = 60
) -> TurnRow:
    deadline = time.monotonic() + timeout_s
    while True:
        turn = await _turn(settings, name)
        if ok(turn):
            return turn
        assert time.monotonic() < deadline, f"{what}: turn is {turn}"
        await anyio.sleep(0.05)


async def test_nested_server_records_and_the_host_runs_and_stops(settings: Settings, tmp_path: Path) -> None:
    from mcp import Client

    from agent_fleet_mcp.server import build_server

    nested = dataclasses.replace(settings, depth=1)
    gate = tmp_path / "gate-never-opened"
    async with Client(build_server(nested)) as inner:
        await call(inner, "create_agent", name="child", template="gate", prompt=str(gate))
        for _ in range(3):  # several ticks of the nested server: it starts nothing itself
            await call(inner, "wait_for_agents", agents=["child"], timeout_s=1)
        assert (await _turn(settings, "child")).status == "queued"

        async with Client(build_server(settings)):  # the host's server runs the queued turn
            turn = await _until(settings, "child", lambda t: t.pid is not None and t.status == "running", "running")
            assert turn.pid is not None
            proc = psutil.Process(turn.pid)

            await call(inner, "delete_agent", agents=["child"])  # closes it; the host's follower stops the process
            deadline = time.monotonic() + 60
            while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, "the host never stopped the turn the nested server closed"
                await anyio.sleep(0.05)
    done = await _turn(settings, "child")
    assert done.status == "cancelled" and not gate.exists()
