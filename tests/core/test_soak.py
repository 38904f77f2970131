"""Soak: many agents through the fleet-wide cap, repeated commands, then delete all; nothing left running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_fleet_mcp.store.sqlite import SqliteStore

from .helpers import call, wait_all

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_forty_agents_through_the_cap(client: Any, settings: Any, no_leftover_groups: set[int]) -> None:
    for i in range(40):
        await call(client, "create_agent", name=f"w{i}", template="sleeper", prompt="0.3")
    for i in range(0, 40, 4):
        await call(client, "command_agent", agent=f"w{i}", prompt="0.2")
    out = await wait_all(client, timeout_s=45)
    if not out["done"]:
        out = await wait_all(client, timeout_s=45)
    status = await call(client, "get_agent_status", agents=[f"w{i}" for i in range(40)])
    assert status["fleet"]["agents"] == 40 and status["fleet"].get("running", 0) == 0
    assert sum(r["turns"] for r in status["agents"]) == 50
    assert all(r["turn_status"] == "succeeded" for r in status["agents"])
    for i in range(8):
        await call(client, "create_agent", name=f"h{i}", template="spawner", prompt="x")
    async with SqliteStore(Path(settings.home) / "fleet.db") as store:
        for agent in await store.list_agents():
            for t in await store.turns_of(agent.id):
                if t.pid is not None:
                    no_leftover_groups.add(t.pid)
        assert len(await store.turns_with_status("running")) == 4  # the cap; 4 spawners wait in the queue
    assert len(no_leftover_groups) == 54
    await anyio.sleep(0.5)  # let the spawners fork their grandchildren
    gone = await call(client, "delete_agent", agents="all")
    assert len(gone["deleted"]) == 48
