"""Cost of a long queue: create_agent latency and an idle server's CPU with many turns queued.

    uv run python bench/queue_cost.py [QUEUED] [--json]       # default 400

The real server (`agent-fleet-mcp`, stdio) runs with AGENT_FLEET_MAX_CONCURRENT=1; one agent's turn sleeps and holds
the only slot. Then: CALLS `create_agent` calls with an (almost) empty queue, the server's CPU % over 10 s while
nothing happens (one turn running and followed, CALLS queued); QUEUED more queued turns are added
through the store (as another server sharing the home would); CALLS more `create_agent` calls; then the server's CPU
% over 10 s while nothing happens. Prints a table.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import anyio
import psutil
from mcp import Client, StdioServerParameters

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files

BENCH = Path(__file__).parent
SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")
CALLS = 20
IDLE_S = 10.0

warnings.filterwarnings("ignore")


def server_process(home: str) -> psutil.Process:
    for p in psutil.Process().children(recursive=True):
        try:
            if "agent-fleet-mcp" in " ".join(p.cmdline()) and p.environ().get("AGENT_FLEET_HOME") == home:
                return p
        except psutil.Error:
            continue
    raise RuntimeError("server process not found")


async def enqueue(home: Path, n: int) -> None:
    spec = AgentSpec(runner="command", command=("true",), template="bench")
    async with SqliteStore(home / "fleet.db") as store:
        for i in range(n):
            a = await store.insert_agent(
                id=uuid.uuid4().hex, name=f"q-{i}", spec=spec, spec_hash="bench", cwd=str(home), idempotency_key=None
            )
            await store.insert_turn(agent_id=a.id, prompt="p", runner="command", model=None)
            await store.mark_queued_unless_running(a.id)


async def main(queued: int, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trust_files(Path(tmp), sorted((BENCH / "agents").glob("*.md")))  # the bench catalog, trusted as a person would
        env = dict(
            os.environ, AGENT_FLEET_HOME=tmp, AGENT_FLEET_AGENTS=str(BENCH / "agents"), AGENT_FLEET_MAX_CONCURRENT="1"
        )
        params = StdioServerParameters(command=SERVER, args=[], env=env, cwd=tmp)
        rows: list[tuple[str, str]] = []
        async with Client(params, mode="legacy") as c:
            r = await c.call_tool("create_agent", {"name": "holder", "template": "sleeper600", "prompt": "x"})
            assert not r.is_error, r.content

            async def creates(tag: str) -> list[float]:
                out: list[float] = []
                for i in range(CALLS):
                    t0 = time.perf_counter()
                    r = await c.call_tool("create_agent", {"name": f"{tag}-{i}", "template": "stamp", "prompt": "x"})
                    out.append((time.perf_counter() - t0) * 1000)
                    assert not r.is_error, r.content
                return out

            empty = await creates("e")
            proc = server_process(tmp)
            proc.cpu_percent(None)
            await anyio.sleep(IDLE_S)
            cpu_empty = proc.cpu_percent(None)
            await enqueue(Path(tmp), queued)
            await anyio.sleep(2.0)  # the server's ticker has seen them
            full = await creates("f")
            total = CALLS * 2 + queued
            proc.cpu_percent(None)
            await anyio.sleep(IDLE_S)
            cpu = proc.cpu_percent(None)
            e50, f50 = statistics.median(empty), statistics.median(full)
            rows.append((f"create_agent p50, 1-{CALLS} queued", f"{e50:.1f} ms"))
            rows.append((f"create_agent p50, {queued + CALLS + 1}-{total} queued", f"{f50:.1f} ms"))
            rows.append(("ratio (full / empty)", f"{f50 / e50:.2f}x"))
            rows.append((f"idle server CPU over {IDLE_S:.0f} s, {CALLS} queued", f"{cpu_empty:.1f} %"))
            rows.append((f"idle server CPU over {IDLE_S:.0f} s, {total} queued", f"{cpu:.1f} %"))
            await c.call_tool("delete_agent", {"agents": "all"})
    if as_json:
        print(json.dumps([
            {"figure": f"create_agent p50, {total} vs {CALLS} queued", "value": round(f50 / e50, 2),
             "target": "<= 1.5x", "ok": f50 / e50 <= 1.5, "note": f"{f50:.1f} vs {e50:.1f} ms"},
            {"figure": f"idle server CPU %, {total} queued", "value": round(cpu, 1), "target": "near 0 (<= 2 %)",
             "ok": cpu <= 2.0},
        ]))  # fmt: skip
        return
    print(f"{'figure':<44} value")
    for k, v in rows:
        print(f"{k:<44} {v}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    anyio.run(main, int(args[0]) if args else 400, "--json" in sys.argv[1:])
