"""Bounded delegation with real nested servers: a `delegator` command agent runs an MCP client against its own
agent-fleet-mcp (stdio, the same fleet home, the environment the fleet gave it) and creates children of the same
definition, waiting on them. Depth and tree size are bounded, and a tree of waiting parents finishes under a
fleet-wide cap of 2 (a descendant of a running turn starts beyond the cap)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.server import build_server

from .helpers import call

pytestmark = pytest.mark.anyio

TREE_DEADLINE_S = 150.0  # nested servers start slowly on a busy 2-core box


@asynccontextmanager
async def fleet(project: Path, env: dict[str, str], **extra: str) -> AsyncGenerator[Any]:
    """An in-process server configured from the environment, exactly as a real one would be."""
    settings = Settings.from_env({**env, **extra}, project_dir=project)
    settings = dataclasses.replace(settings, poll_interval_s=0.05, kill_grace_s=1.0)
    async with Client(build_server(settings)) as c:
        try:
            yield c
        finally:
            await call(c, "delete_agent", agents="all")


async def wait_tree(c: Any, root: str) -> dict[str, Any]:
    """Wait until no agent of the fleet is busy (the root waits on its children), or the deadline."""
    deadline = time.monotonic() + TREE_DEADLINE_S
    out: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = await call(c, "wait_for_agents", timeout_s=10)
        if not out["done"]:
            continue
        # the agents of a wait are those that existed when it began: check again over all of them now
        out = await call(c, "wait_for_agents", timeout_s=0)
        if out["done"] and {r["name"] for r in out["finished"]} >= {root}:
            return out
    raise AssertionError(f"the tree did not finish in {TREE_DEADLINE_S:g} s: {status_summary(out)}")


def status_summary(out: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(r["name"], r["status"], r.get("result")) for r in out.get("finished", [])]


async def result_of(c: Any, agent: str) -> str:
    return (await call(c, "get_agent_output", agent=agent))["text"]


async def test_depth_is_bounded(project: Path, fleet_env: dict[str, str]) -> None:
    """Default AGENT_FLEET_MAX_DEPTH 2: the host's agent (depth 1) may create a child (depth 2); the child's own
    server refuses to go deeper, with a clear error. Each agent knows its depth and root from its environment."""
    async with fleet(project, fleet_env) as c:
        await call(c, "create_agent", name="chain", template="delegator", prompt="fanout=1 levels=4")
        out = await wait_tree(c, "chain")
        names = sorted(r["name"] for r in out["finished"])
        assert names == ["chain", "chain.0"], (status_summary(out), await result_of(c, "chain"))
        root_id = (await call(c, "get_agent_status", agents=["chain"]))["agents"][0]
        child = await result_of(c, "chain.0")
        assert "depth 2 root ag_" in child and "delegation depth limit" in child, child
        assert "AGENT_FLEET_MAX_DEPTH is 2" in child
        assert "depth 1 root ag_" in await result_of(c, "chain")
        assert all(r["status"] == "succeeded" for r in out["finished"]), (status_summary(out), root_id)


async def test_tree_size_is_bounded(project: Path, fleet_env: dict[str, str]) -> None:
    """A self-replicating tree (fanout 2, 3 levels: 7 agents unbounded) stops at AGENT_FLEET_MAX_TREE_AGENTS."""
    async with fleet(project, fleet_env, AGENT_FLEET_MAX_DEPTH="5", AGENT_FLEET_MAX_TREE_AGENTS="4") as c:
        await call(c, "create_agent", name="tree", template="delegator", prompt="fanout=2 levels=2")
        out = await wait_tree(c, "tree")
        assert len(out["finished"]) == 4, status_summary(out)
        outputs = [await result_of(c, r["name"]) for r in out["finished"]]
        refusals = [line for text in outputs for line in text.splitlines() if line.startswith("refused:")]
        assert len(refusals) == 3, outputs  # 7 wanted, 4 allowed
        assert all("AGENT_FLEET_MAX_TREE_AGENTS (4)" in r for r in refusals), refusals


async def test_waiting_parents_do_not_deadlock_the_cap(project: Path, fleet_env: dict[str, str]) -> None:
    """Cap 2, a 7-agent tree whose parents (root, 2 children) wait on their children: it finishes."""
    async with fleet(project, fleet_env, AGENT_FLEET_MAX_CONCURRENT="2", AGENT_FLEET_MAX_DEPTH="3") as c:
        await call(c, "create_agent", name="t", template="delegator", prompt="fanout=2 levels=2")
        out = await wait_tree(c, "t")
        assert len(out["finished"]) == 7, status_summary(out)
        assert all(r["status"] == "succeeded" for r in out["finished"]), status_summary(out)
        assert "children done: 2" in await result_of(c, "t")
        # with nothing of the tree running, an unrelated agent is back under the plain cap
        await call(c, "create_agent", name="after", template="echo", prompt="hi")
        assert (await call(c, "wait_for_agents", agents=["after"], timeout_s=30))["done"]


async def test_a_server_at_the_deepest_level_creates_nothing(project: Path, fleet_env: dict[str, str]) -> None:
    """A server whose environment says it runs inside a depth-2 agent refuses create_agent and run_agents."""
    env = {**fleet_env, "AGENT_FLEET_DEPTH": "2", "AGENT_FLEET_ROOT": "ag_root", "AGENT_FLEET_AGENT_ID": "ag_mid"}
    async with fleet(project, env) as c:
        made = await c.call_tool("create_agent", {"name": "deep", "template": "echo", "prompt": "hi"})
        ran = await c.call_tool("run_agents", {"runs": [{"agent": "echo", "input": "hi"}], "wait_s": 0})
        for res in (made, ran):
            assert res.is_error and "delegation depth limit" in " ".join(getattr(b, "text", "") for b in res.content)
        assert (await call(c, "get_agent_status"))["agents"] == []
