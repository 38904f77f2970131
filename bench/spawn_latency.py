"""Time from create_agent to the agent actually working, through the real MCP tools (in-process client).

    uv run python bench/spawn_latency.py [N]              # command agent: its process running
    uv run python bench/spawn_latency.py [N] anthropic    # anthropic worker: its first request at the model

command mode:
For each of N agents: t0 before the create_agent call, t1 when it returns, and the agent's own clock reading
(`date +%s.%N`, printed by its process as soon as it runs). Reports create_agent latency and process start relative
to the return of create_agent (negative = the process was already running when the call returned).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.server import build_server

BENCH = Path(__file__).parent


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, AGENT_FLEET_AGENTS=str(BENCH / "agents"), AGENT_FLEET_HOME=tmp)
        settings = Settings(home=Path(tmp), project_dir=Path(tmp), env=env, max_concurrent=8, poll_interval_s=0.05)
        create_ms: list[float] = []
        start_after_return_ms: list[float] = []
        start_after_call_ms: list[float] = []
        async with Client(build_server(settings)) as c:
            for i in range(n):
                t0 = time.time()
                res = await c.call_tool("create_agent", {"name": f"s{i}", "template": "stamp", "prompt": "go"})
                t1 = time.time()
                assert not res.is_error, res.content
                done = await c.call_tool("wait_for_agents", {"agents": [f"s{i}"], "timeout_s": 10})
                assert done.structured_content["done"]
                out = await c.call_tool("get_agent_output", {"agent": f"s{i}"})
                t_proc = float(out.structured_content["text"].strip())
                create_ms.append((t1 - t0) * 1000)
                start_after_return_ms.append((t_proc - t1) * 1000)
                start_after_call_ms.append((t_proc - t0) * 1000)
            await c.call_tool("delete_agent", {"agents": "all"})
    print(f"N={n}")
    print(
        f"create_agent call latency      p50 {statistics.median(create_ms):6.1f} ms   "
        f"p95 {pct(create_ms, 0.95):6.1f} ms"
    )
    print(
        f"process running after call     p50 {statistics.median(start_after_call_ms):6.1f} ms   "
        f"p95 {pct(start_after_call_ms, 0.95):6.1f} ms"
    )
    print(
        f"process running vs return      p50 {statistics.median(start_after_return_ms):6.1f} ms   "
        f"(negative: already running when create_agent returned)"
    )


async def main_anthropic(n: int) -> None:
    """create_agent return -> the worker's first Messages API request arriving at the scripted server."""
    from agent_fleet_mcp.runners import forkserver
    from agent_fleet_mcp.testing import ScriptedModelServer

    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer() as srv:
        env = dict(os.environ, AGENT_FLEET_HOME=tmp, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="bench")
        settings = Settings(home=Path(tmp), project_dir=BENCH.parent, env=env, max_concurrent=8, poll_interval_s=0.05)
        lat_ms: list[float] = []
        async with Client(build_server(settings)) as c:
            for i in range(n):
                seen = len(srv.message_requests)
                res = await c.call_tool(
                    "create_agent", {"name": f"w{i}", "runner": "anthropic", "model": "claude-haiku-4-5",
                                     "prompt": "What does the README say about the demo?"}
                )  # fmt: skip
                t1 = time.time()
                assert not res.is_error, res.content
                assert srv.wait_for_requests(seen + 1, timeout=30, path="/v1/messages")
                lat_ms.append((srv.message_requests[seen].ts - t1) * 1000)
                done = await c.call_tool("wait_for_agents", {"agents": [f"w{i}"], "timeout_s": 30})
                assert done.structured_content["done"]
            await c.call_tool("delete_agent", {"agents": "all"})
        forkserver.stop(Path(tmp))
    mode = "off (AGENT_FLEET_FORKSERVER=0)" if os.environ.get("AGENT_FLEET_FORKSERVER") == "0" else "on"
    print(f"N={n} anthropic agents, fork server {mode} (with it on, the first turn also starts the fork server)")
    print(
        f"create_agent return -> first API request   p50 {statistics.median(lat_ms):6.1f} ms   "
        f"p95 {pct(lat_ms, 0.95):6.1f} ms   first {lat_ms[0]:6.1f} ms"
    )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    anyio.run(main_anthropic if sys.argv[2:] == ["anthropic"] else main, count)
