"""Atomic idempotency: one agent per idempotency key and per live name + spec, whatever the concurrency, enforced
by the store's constraints: concurrent creates in one server, and across two server processes on one home."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from .helpers import call, err

pytestmark = pytest.mark.anyio

SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")
KEYS = 30


async def all_at_once(calls: list[tuple[Any, dict[str, Any]]]) -> list[CallToolResult]:
    """Send every create_agent call concurrently; results in the order given."""
    results: list[CallToolResult | None] = [None] * len(calls)

    async def one(i: int, client: Any, args: dict[str, Any]) -> None:
        results[i] = await client.call_tool("create_agent", args)

    async with anyio.create_task_group() as tg:
        for i, (client, args) in enumerate(calls):
            tg.start_soon(one, i, client, args)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


async def test_one_agent_per_key_within_one_server(client: Any) -> None:
    args = [{"name": f"w{i}", "template": "echo", "idempotency_key": "same"} for i in range(20)]
    results = await all_at_once([(client, a) for a in args])
    agents = (await call(client, "get_agent_status"))["agents"]
    assert len(agents) == 1, [a["name"] for a in agents]
    winners = [r for r in results if not r.is_error]
    assert len(winners) == 1 and winners[0].structured_content is not None
    assert winners[0].structured_content["agent"]["name"] == agents[0]["name"]
    assert all("idempotency key" in err(r) for r in results if r.is_error)


async def test_same_name_and_spec_returns_the_existing_agent_within_one_server(client: Any) -> None:
    results = await all_at_once([(client, {"name": "same", "template": "echo"}) for _ in range(20)])
    assert all(not r.is_error for r in results), [err(r) for r in results if r.is_error][:3]
    created = [r.structured_content["created"] for r in results if r.structured_content is not None]
    assert created.count(True) == 1 and created.count(False) == 19
    assert len((await call(client, "get_agent_status"))["agents"]) == 1


@asynccontextmanager
async def two_servers(env: dict[str, str], cwd: Path) -> AsyncGenerator[tuple[Any, Any]]:
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                Client(StdioServerParameters(command=SERVER, args=[], env=env, cwd=str(cwd)), mode="legacy")
            )
            for _ in range(2)
        ]
        yield clients[0], clients[1]


async def test_across_two_servers(fleet_env: dict[str, str], project: Path) -> None:
    """Two servers on one home get the same creates at once: every key makes exactly one agent, and the same
    name + spec returns the existing agent on both (no Conflict)."""
    async with two_servers(fleet_env, project) as (a, b):
        same = await all_at_once(
            [(srv, {"name": f"s{i}", "template": "echo", "idempotency_key": f"s{i}"}) for i in range(KEYS)
             for srv in (a, b)]
        )  # fmt: skip
        assert [err(r) for r in same if r.is_error] == []
        created = [bool(r.structured_content and r.structured_content["created"]) for r in same]
        assert created.count(True) == KEYS

        by_key = await all_at_once(
            [(srv, {"name": f"k{i}-{tag}", "template": "echo", "idempotency_key": f"k{i}"}) for i in range(KEYS)
             for srv, tag in ((a, "a"), (b, "b"))]
        )  # fmt: skip
        first = await call(a, "get_agent_status")  # bounded: what it leaves out is counted and pageable
        assert first["fleet"]["agents"] == 2 * KEYS
        assert len(first["agents"]) + sum(first.get("not_shown", {}).values()) == 2 * KEYS, first
        names: list[str] = []
        cursor = first.get("next_cursor")
        while cursor:
            page = await call(a, "get_agent_status", cursor=cursor, limit=25)
            names += [r["name"] for r in page["agents"]]
            cursor = page.get("next_cursor")
        assert len(names) == 2 * KEYS, names
        for i in range(KEYS):
            assert sum(n in (f"k{i}-a", f"k{i}-b") for n in names) == 1, (i, names)
        losers = [err(r) for r in by_key if r.is_error]
        assert len(losers) == KEYS and all("idempotency key" in e for e in losers), losers[:3]
        await call(a, "delete_agent", agents="all")
