"""Kill a real server at many points of a spawn burst, start another one, count stuck and duplicated turns.

    uv run python bench/crash_spawn_window.py [--agents 8] [--delays 0,0.05,0.1,...] [--later]

For each delay: a fresh fleet home, a real `agent-fleet-mcp` (stdio), `--agents` create_agent calls sent at once
(the tests' `tally` agent: each run of a turn appends one line to a file in its agent folder), SIGKILL of the server
``delay`` seconds after the burst began. Then a new server on the same home (``--later``: as if started more than
30 s later, its orphan-claim age set to 0) and up to 40 s of wait_for_agents.
Reported per delay: turns claimed without a recorded pid at the kill ("in window"), turns still not done after the
restart ("stuck"), turns whose program ran more than once ("duplicated"). PYTHONPATH in the environment is passed to
the servers (point it at another checkout's src to measure that code).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

TESTS = Path(__file__).resolve().parents[1] / "tests"
LAUNCHER = """
import os
from agent_fleet_mcp import fleet
if os.environ.get("BENCH_ORPHAN_CLAIM_S"):
    fleet.ORPHAN_CLAIM_S = float(os.environ["BENCH_ORPHAN_CLAIM_S"])
from agent_fleet_mcp.cli import serve_main
serve_main([])
"""


def params(env: dict[str, str], cwd: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-c", LAUNCHER], env=env, cwd=str(cwd))


def server_pid(home: Path) -> int | None:
    import psutil

    for p in psutil.Process().children(recursive=True):
        try:
            if "-c" in p.cmdline() and p.environ().get("AGENT_FLEET_HOME") == str(home):
                return p.pid
        except psutil.Error:
            continue
    return None


async def one(delay: float, agents: int, later: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "project").mkdir()
        home = base / "home"
        env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
        env.update(AGENT_FLEET_HOME=str(home), AGENT_FLEET_AGENTS=str(TESTS / "agents"))
        try:
            async with Client(params(env, base / "project"), mode="legacy") as c:
                await c.call_tool("get_agent_status", {})
                pid = server_pid(home)
                assert pid is not None

                async def create(i: int) -> None:
                    try:
                        await c.call_tool("create_agent", {"name": f"t{i}", "template": "tally", "prompt": "0.2"})
                    except Exception:
                        return

                async with anyio.create_task_group() as tg:
                    for i in range(agents):
                        tg.start_soon(create, i)
                    await anyio.sleep(delay)
                    os.kill(pid, signal.SIGKILL)
        except Exception:
            pass
        db = sqlite3.connect(home / "fleet.db")
        in_window = db.execute("SELECT COUNT(*) FROM turns WHERE status = 'running' AND pid IS NULL").fetchone()[0]
        db.close()
        renv = {**env, "BENCH_ORPHAN_CLAIM_S": "0"} if later else env
        async with Client(params(renv, base / "project"), mode="legacy") as c:
            res = await c.call_tool("wait_for_agents", {"timeout_s": 40})
            out = res.structured_content or {}
        db = sqlite3.connect(home / "fleet.db")
        rows = db.execute("SELECT agent_id, n, status FROM turns").fetchall()
        db.close()
        stuck = sum(1 for _, _, st in rows if st in ("running", "queued"))
        dup = 0
        for agent_id, n, _ in rows:
            tally = home / "agents" / agent_id / "tally.log"
            runs = tally.read_text().splitlines().count(f"done-{n}") if tally.exists() else 0
            dup += runs > 1
        return {"delay": delay, "turns": len(rows), "in_window": in_window, "stuck": stuck, "duplicated": dup,
                "done": bool(out.get("done"))}  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--delays", default="0.02,0.05,0.1,0.15,0.2,0.3,0.4,0.6,0.8,1.0")
    ap.add_argument("--later", action="store_true")
    args = ap.parse_args()
    total = {"turns": 0, "in_window": 0, "stuck": 0, "duplicated": 0}
    for d in (float(x) for x in args.delays.split(",")):
        r = await one(d, args.agents, args.later)
        for k in total:
            total[k] += r[k]
        print(r, flush=True)
    print("total", total)


if __name__ == "__main__":
    anyio.run(main)
