"""Per-definition concurrency strategies and the fleet-wide cap, with real processes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.server import build_server

from .helpers import call, err, wait_all

pytestmark = pytest.mark.anyio


async def test_queue_strategy_runs_turns_in_order(client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate-open"  # the first turn runs until the test opens it, however slow the machine
    await call(client, "create_agent", name="q", template="gate", prompt=str(gate))
    second = await call(client, "command_agent", agent="q", prompt=str(gate))
    third = await call(client, "command_agent", agent="q", prompt=str(gate))
    assert (second["status"], third["status"]) == ("queued", "queued")
    msg = err(await client.call_tool("command_agent", {"agent": "q", "prompt": "0.1"}))
    assert "max_queued 2" in msg
    gate.touch()
    await wait_all(client, ["q"])
    rows = (await call(client, "get_agent_status", agents=["q"]))["agents"]
    assert rows[0]["turns"] == 3 and rows[0]["turn_status"] == "succeeded"
    for n in (1, 2, 3):
        out = await call(client, "get_agent_output", agent="q", turn=n)
        assert out["turn_status"] == "succeeded" and out["text"].endswith("done")


async def test_reject_strategy(client: Any) -> None:
    await call(client, "create_agent", name="r", template="sleeper-reject", prompt="5")
    msg = err(await client.call_tool("command_agent", {"agent": "r", "prompt": "1"}))
    assert "busy" in msg and "wait_for_agents" in msg
    await call(client, "delete_agent", agents=["r"])


async def test_replace_strategy_cancels_running_turn(client: Any) -> None:
    await call(client, "create_agent", name="rep", template="sleeper-replace", prompt="30")
    out = await call(client, "command_agent", agent="rep", prompt="0.2")
    assert out["turn"] == 2
    await wait_all(client, ["rep"], timeout_s=15)
    first = await call(client, "get_agent_output", agent="rep", turn=1)
    assert first["turn_status"] == "cancelled"
    second = await call(client, "get_agent_output", agent="rep", turn=2)
    assert second["turn_status"] == "succeeded"


async def test_global_cap_queues_beyond_max_concurrent(client: Any, tmp_path: Path) -> None:
    # settings fixture: max_concurrent = 4. The turns run until the test opens their gate, however slow the machine.
    gate = tmp_path / "gate-open"
    for i in range(6):
        await call(client, "create_agent", name=f"g{i}", template="gate", prompt=str(gate))
    status = await call(client, "get_agent_status")
    assert status["fleet"]["running"] == 4
    assert sum(1 for r in status["agents"] if r["status"] == "queued") == 2
    gate.touch()
    await wait_all(client, timeout_s=40)
    rows = (await wait_all(client, timeout_s=0))["finished"]
    assert len(rows) == 6 and all(r["status"] == "succeeded" for r in rows)


async def test_wait_any_and_timeout(client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "fast-may-finish"  # "fast" ends only once the wait below has started, however slow the machine
    await call(client, "create_agent", name="fast", template="gate", prompt=str(gate))
    await call(client, "create_agent", name="slow", template="sleeper", prompt="20")

    async def open_gate(p: float, total: float | None, message: str | None) -> None:
        gate.touch()  # the wait reports progress right away when it has to wait

    res = await client.call_tool(
        "wait_for_agents", {"agents": ["fast", "slow"], "until": "any", "timeout_s": 30}, progress_callback=open_gate
    )
    any_done = res.structured_content
    assert any_done["done"] and any_done["still_running"] == ["slow"]
    assert [f["name"] for f in any_done["finished"]] == ["fast"]
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    res = await client.call_tool("wait_for_agents", {"agents": ["slow"], "timeout_s": 4}, progress_callback=on_progress)
    out = res.structured_content
    assert out["done"] is False and out["still_running"] == ["slow"] and "again" in out["note"]
    assert 3.5 <= out["waited_s"] <= 6
    assert progress and progress[0][2] is not None and "0/1 done" in progress[0][2]
    await call(client, "delete_agent", agents="all")


async def test_a_turn_is_closed_when_its_process_ends_however_long_the_poll(settings: Settings, tmp_path: Path) -> None:
    """A real process's end wakes its follower (a pidfd): with a poll interval of an hour, the wait still ends as
    soon as the process does."""
    gate = tmp_path / "gate-open"
    async with Client(build_server(replace(settings, poll_interval_s=3600))) as c:
        await call(c, "create_agent", name="g", template="gate", prompt=str(gate))
        with anyio.fail_after(30):
            while (await call(c, "get_agent_status", agents=["g"]))["agents"][0]["status"] != "running":
                await anyio.sleep(0.02)
        gate.touch()
        out = await wait_all(c, ["g"], timeout_s=30)
        assert [(a["name"], a["status"]) for a in out["finished"]] == [("g", "succeeded")]
