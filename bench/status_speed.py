"""get_agent_status latency over real stdio with many agents stored.

    uv run python bench/status_speed.py [N ...]               # default: 500 5000
    uv run python bench/status_speed.py --validate [N ...]    # also time the Python SDK client's own check
    uv run python bench/status_speed.py --json [N ...]        # [{figure, value, target, ok}] for bench/all.py
    uv run python bench/status_speed.py --calls 20 [N ...]    # fewer timed calls (default 60)

By default the Python SDK client's re-validation of each result against the tool's output schema (jsonschema, on
the client side: ~70 ms for 20 rows on a busy 2-core box, more than the server's whole answer) is switched off, so
the figures are the server's answer and the stdio round trip, as a host that does not revalidate sees them.

For each N: a fresh fleet home is filled through the store (N agents, each with TURNS finished turns; no turn is
run), then the real server (`agent-fleet-mcp`, stdio) is started on it and times, over CALLS calls each:
an MCP ping (the floor of a round trip), `get_agent_status(agents=[one])` and `get_agent_status()`.
Prints p50/p95 in ms and the size of the default call's structured result.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientSession

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.sqlite import SqliteStore

BENCH = Path(__file__).parent
SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")
TURNS = 2
CALLS = 60

warnings.filterwarnings("ignore")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def fill(home: Path, n: int) -> None:
    spec = AgentSpec(runner="command", command=("true",), template="bench")
    async with SqliteStore(home / "fleet.db") as store:
        for i in range(n):
            a = await store.insert_agent(
                id=f"a{i:05d}", name=f"agent-{i}", spec=spec, spec_hash="bench", cwd=str(home), idempotency_key=None
            )
            for _ in range(TURNS):
                t = await store.insert_turn(agent_id=a.id, prompt="p", runner="command", model=None)
                assert await store.claim_turn(a.id, t.n, max_running=10**9)
                await store.finish_turn(
                    a.id, t.n, status="succeeded", exit_code=0, result_text="done", agent_status="idle"
                )


async def timed(fn: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(5):  # warm-up
        await fn()
    out: list[float] = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def bench(n: int) -> list[tuple[str, list[float], str]]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        await fill(home, n)
        print(f"N={n}: filled in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        env = dict(os.environ, AGENT_FLEET_HOME=tmp, AGENT_FLEET_AGENTS=str(BENCH / "agents"))
        params = StdioServerParameters(command=SERVER, args=[], env=env, cwd=tmp)
        one = f"agent-{n // 2}"
        async with Client(params, mode="legacy") as c:

            async def status_one() -> Any:
                r = await c.call_tool("get_agent_status", {"agents": [one]})
                assert not r.is_error, r.content
                return r

            async def status_all() -> Any:
                r = await c.call_tool("get_agent_status", {})
                assert not r.is_error, r.content
                return r

            ping = await timed(c.send_ping)
            t_one = await timed(status_one)
            t_all = await timed(status_all)
            r = await status_all()
            size = len(json.dumps(r.structured_content))
            rows = len((r.structured_content or {}).get("agents", []))
        return [
            ("MCP ping", ping, ""),
            ("get_agent_status(agents=[one])", t_one, ""),
            ("get_agent_status()", t_all, f"{rows} rows, {size / 1024:.1f} KB"),
        ]


async def _no_validation(self: ClientSession, name: str, result: Any) -> None:
    return None


TARGETS_MS = {"get_agent_status(agents=[one])": 5.0, "get_agent_status()": 10.0}


async def main(ns: list[int], as_json: bool) -> None:
    figures: list[dict[str, object]] = []
    if not as_json:
        print(f"{'N':>6}  {'call':<32} {'p50 ms':>8} {'p95 ms':>8}  result")
    for n in ns:
        for name, xs, note in await bench(n):
            p50 = statistics.median(xs)
            if as_json and name == "MCP ping":  # the floor of a round trip on this machine now: the load's measure
                figures.append({"figure": f"MCP ping p50 ms, {n:,} agents (floor)", "value": round(p50, 1),
                                "target": "", "ok": None})  # fmt: skip
            elif as_json and name in TARGETS_MS:
                figures.append({"figure": f"{name} p50 ms, {n:,} agents", "value": round(p50, 1),
                                "target": f"<= {TARGETS_MS[name]:g} ms", "ok": p50 <= TARGETS_MS[name],
                                **({"note": note} if note else {})})  # fmt: skip
            elif not as_json:
                print(f"{n:>6}  {name:<32} {p50:8.1f} {pct(xs, 0.95):8.1f}  {note}")
    if as_json:
        print(json.dumps(figures))


if __name__ == "__main__":
    args = sys.argv[1:]
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if "--calls" in args:
        i = args.index("--calls")
        CALLS = int(args[i + 1])
        del args[i : i + 2]
    if "--validate" in args:
        args.remove("--validate")
    else:
        ClientSession.validate_tool_result = _no_validation  # type: ignore[method-assign]
    anyio.run(main, [int(a) for a in args] or [500, 5000], as_json)
