"""Turns start at once: N anthropic turns through ONE run_agents call, on the scripted model with a fixed latency
(in-process MCP client, real worker processes, the fork server as configured).

    uv run python bench/turn_start.py [--runs 20] [--latency 3] [--think 3] [--repeat 3] [--json]
    uv run python bench/turn_start.py --runs 200 --latency 5 --repeat 1     # 200 runs: 4 run_agents calls at once

Each repeat uses a fresh fleet home (so the fork server is started from nothing, as on a first start) and the
server's default settings (poll interval included). After the server is up, the client lists the tools and calls
get_agent_status once, as a host does on connecting (the client's own schema validation is then warm: a host's
cost, not the server's), then waits ``--think`` seconds before calling run_agents, as a host does while its model
writes its first tool call (0 = call at once). Ideal wall time = one model latency; the target is <= 1.15x ideal, and
the first requests of the N turns arriving within 0.3 s of each other (for 100 runs or more: <= 1.8x ideal and a
peak RSS <= 150 MB). More runs than one batch takes (50) go out as several run_agents calls at once. The scripted
model runs in its own process (bench/model_process.py; --model-in-process for the old way). Peak RSS is
this bench process's (the server and the in-process client; with --model-in-process also the model). The worker CPU
column is the median CPU of a forked turn's process, from the fork server's log (``reaped ... cpu_ms=``);
``AGENT_FLEET_FORKSERVER_CLONE=0`` compares the fork-then-unshare path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import anyio
from mcp import Client
from model_process import ModelProcess

import agent_fleet_mcp
from agent_fleet_mcp.batches import MAX_RUNS
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.testing import Reply, ScriptedModelServer

ROOT = Path(__file__).parent.parent


@dataclass
class Run:
    wall_s: float
    first_s: float  # call -> earliest first request
    last_s: float  # call -> latest first request
    zygote_ready: bool  # the fork server answered before run_agents was called
    worker_cpu_ms: float | None = None  # median CPU of a forked turn's process (the fork server's log), None: none

    @property
    def spread_s(self) -> float:
        return self.last_s - self.first_s


async def host_like_connect(c: Client) -> None:
    """What a host does on connecting, before its model's first call: list the tools and compile their output-schema
    validators (the TypeScript SDK of Claude Code and VS Code compiles them at listing; the Python client would do
    it inside the first call of each tool, ~0.06 s for run_agents, a client's cost that is not the server's), then
    a first status call."""
    tools = (await c.list_tools()).tools
    compile_validator = getattr(c.session, "_output_schema_validator", None)  # the Python client's per-tool cache
    for tool in tools:
        if compile_validator is not None and tool.output_schema is not None:
            compile_validator(tool.name, tool.output_schema)
    await c.call_tool("get_agent_status", {})


async def run_batch(c: Client, body: list[dict[str, str]]) -> None:
    res = await c.call_tool("run_agents", {"runs": body, "wait_s": 45})
    assert not res.is_error, res.content
    assert res.structured_content and res.structured_content["done"], res.structured_content


class _InProcess:
    """The scripted model inside this process (``--model-in-process``): the old way, which charges the model's
    work to the server (one interpreter lock)."""

    def __init__(self, srv: ScriptedModelServer) -> None:
        self.base_url = srv.base_url
        self._srv = srv

    def message_times(self) -> list[float]:
        return [r.ts for r in self._srv.message_requests]


@contextlib.contextmanager
def model(runs: int, latency_s: float, *, in_process: bool) -> Generator[_InProcess | ModelProcess]:
    if in_process:
        with ScriptedModelServer([Reply("done")] * runs, latency_s=latency_s) as srv:
            yield _InProcess(srv)
    else:
        with ModelProcess(replies=runs, latency_s=latency_s) as proc:
            yield proc


async def one(runs: int, latency_s: float, think_s: float, *, in_process: bool = False) -> Run:
    with tempfile.TemporaryDirectory() as tmp, model(runs, latency_s, in_process=in_process) as srv:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_"))}
        env.update(AGENT_FLEET_HOME=tmp, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="bench")
        env.update({k: v for k, v in os.environ.items() if k.startswith("AGENT_FLEET_FORKSERVER")})
        settings = Settings(home=Path(tmp), project_dir=ROOT, env=env, max_concurrent=max(64, runs))
        try:
            async with Client(build_server(settings)) as c:
                await host_like_connect(c)
                await anyio.sleep(think_s)
                ready = forkserver.status(Path(tmp), timeout_s=0.2) is not None
                body = [{"agent": "planner", "id": f"r{i}", "input": f"task {i}: say done"} for i in range(runs)]
                t0 = time.time()
                async with anyio.create_task_group() as tg:
                    for k in range(0, runs, MAX_RUNS):
                        tg.start_soon(run_batch, c, body[k : k + MAX_RUNS])
                wall = time.time() - t0
                firsts = sorted(ts - t0 for ts in srv.message_times())[:runs]
                assert len(firsts) == runs, f"{len(firsts)} of {runs} turns reached the model"
                await c.call_tool("delete_agent", {"agents": "all"})
        finally:
            forkserver.stop(Path(tmp))
        cpu = worker_cpu_ms(Path(tmp) / "logs" / forkserver.LOG_NAME)
    return Run(wall, min(firsts), max(firsts), ready, cpu)


def worker_cpu_ms(log: Path) -> float | None:
    """Median CPU (user + system) of the forked turns, as the fork server logs them when it reaps them."""
    try:
        values = [float(m.group(1)) for m in re.finditer(r" reaped .* cpu_ms=([\d.]+)", log.read_text())]
    except OSError:
        return None
    return statistics.median(values) if values else None


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--latency", type=float, default=3.0)
    p.add_argument("--think", type=float, default=3.0, help="seconds between server start and run_agents")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print [{figure, value, target, ok}] instead of a table")
    p.add_argument("--model-in-process", action="store_true",
                   help="run the scripted model inside this process (shares the server's interpreter lock)")
    a = p.parse_args()
    results = [await one(a.runs, a.latency, a.think, in_process=a.model_in_process) for _ in range(a.repeat)]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls = [r.wall_s for r in results]
    spreads = [r.spread_s for r in results]
    ratio, spread = statistics.median(walls) / a.latency, statistics.median(spreads)
    many = a.runs >= 100
    if a.json:
        what = f"{a.runs} x {a.latency:g} s anthropic turns"
        figures = [{"figure": f"{what}: wall vs ideal", "value": round(ratio, 2),
                    "target": f"<= {1.8 if many else 1.15}x", "ok": ratio <= (1.8 if many else 1.15)}]  # fmt: skip
        if many:
            figures.append({"figure": f"{what}: peak RSS (server + client)", "value": round(rss_mb),
                            "target": "<= 150 MB", "ok": rss_mb <= 150})  # fmt: skip
        else:
            figures.append({"figure": f"{what}: first-request spread s", "value": round(spread, 2),
                            "target": "<= 0.3 s", "ok": spread <= 0.3})  # fmt: skip
        print(json.dumps(figures))
        return
    print(f"code: {Path(agent_fleet_mcp.__file__).parent}")
    print(f"{a.runs} anthropic runs x {a.latency:g} s model latency, one run_agents, think {a.think:g} s, "
          f"fork server {'off' if os.environ.get(forkserver.DISABLE_ENV) == '0' else 'on'}")  # fmt: skip
    print(f"| {'#':>2} | {'wall s':>6} | {'x ideal':>7} | {'first req s':>11} | {'last first req s':>16} | "
          f"{'spread s':>8} | zygote ready at call | worker CPU ms |")  # fmt: skip
    print(f"|{'-' * 4}|{'-' * 8}|{'-' * 9}|{'-' * 13}|{'-' * 18}|{'-' * 10}|{'-' * 22}|{'-' * 15}|")
    for i, r in enumerate(results, 1):
        cpu = "-" if r.worker_cpu_ms is None else f"{r.worker_cpu_ms:.1f}"
        print(f"| {i:>2} | {r.wall_s:6.2f} | {r.wall_s / a.latency:7.2f} | {r.first_s:11.2f} | {r.last_s:16.2f} | "
              f"{r.spread_s:8.2f} | {'yes' if r.zygote_ready else 'no':>20} | {cpu:>13} |")  # fmt: skip
    what_rss = "server + in-process client" + (" + scripted model" if a.model_in_process else "")
    print(f"peak RSS of this process ({what_rss}; the model runs in its own process unless --model-in-process): "
          f"{rss_mb:.0f} MB")
    if many:
        print(f"median: wall {statistics.median(walls):.2f} s = {ratio:.2f}x ideal (target <= 1.8x); "
              f"peak RSS {rss_mb:.0f} MB (target <= 150 MB)")  # fmt: skip
    else:
        print(f"median: wall {statistics.median(walls):.2f} s = {ratio:.2f}x ideal (target <= 1.15x); "
              f"first-request spread {spread:.2f} s (target <= 0.3 s)")  # fmt: skip


if __name__ == "__main__":
    anyio.run(main)
