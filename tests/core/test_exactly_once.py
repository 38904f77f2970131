"""Exactly-once turns across a server crash in the spawn window (real stdio servers on one fleet home).

The crashing server is the real `agent-fleet-mcp` with two probes wrapped around its store and spawn functions (by
the launcher below, not by anything in the package): it SIGKILLs itself right after its Nth successful turn claim,
or right after its Nth spawn returned (before the pid is recorded). A second server then starts on the same home,
either at once or as if much later (its orphan-claim age set to 0). Every turn must end, and every turn's program
must have run exactly once: the `tally` agent appends one line per run to a file in its agent folder.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from agent_fleet_mcp.runners import started
from agent_fleet_mcp.store.sqlite import SqliteStore

from .helpers import call

pytestmark = pytest.mark.anyio

LAUNCHER = """
import os, signal
from agent_fleet_mcp import fleet
from agent_fleet_mcp.runners import process
from agent_fleet_mcp.store.sqlite import SqliteStore

point, nth = os.environ.get("TEST_CRASH_AT"), int(os.environ.get("TEST_CRASH_NTH", "1"))
if os.environ.get("TEST_ORPHAN_CLAIM_S"):
    fleet.ORPHAN_CLAIM_S = float(os.environ["TEST_ORPHAN_CLAIM_S"])
seen = {"claimed": 0, "spawned": 0}

def probe(name):
    seen[name] += 1
    if name == point and seen[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

claim = SqliteStore.claim_queued
async def claim_queued(self, *args, **kwargs):
    got = await claim(self, *args, **kwargs)
    for _ in got:
        probe("claimed")
    return got
SqliteStore.claim_queued = claim_queued

spawn = process.spawn
def spawn_probe(plan, files):
    got = spawn(plan, files)
    probe("spawned")
    return got
process.spawn = spawn_probe

from agent_fleet_mcp.cli import serve_main
serve_main([])
"""


@asynccontextmanager
async def server(env: dict[str, str], cwd: Path, **test_env: str) -> AsyncGenerator[Any]:
    params = StdioServerParameters(command=sys.executable, args=["-c", LAUNCHER], env={**env, **test_env}, cwd=str(cwd))
    async with Client(params, mode="legacy") as c:
        yield c


async def crash_during_burst(env: dict[str, str], project: Path, *, point: str, nth: int, agents: int) -> None:
    """Create ``agents`` tally agents at once on a server that dies at the ``nth`` ``point``."""

    async def create(c: Any, i: int) -> None:
        try:
            await call(c, "create_agent", name=f"t{i}", template="tally", prompt="0.3")
        except Exception:  # the server died under this call
            return

    try:
        async with server(env, project, TEST_CRASH_AT=point, TEST_CRASH_NTH=str(nth)) as c:
            async with anyio.create_task_group() as tg:
                for i in range(agents):
                    tg.start_soon(create, c, i)
            await call(c, "get_agent_status")  # still alive here: the probe never fired
    except Exception:  # the session ends with the server's death
        return
    raise AssertionError(f"the server did not die at {point} #{nth}")


@pytest.mark.parametrize("later", [False, True], ids=["restart-at-once", "restart-later"])
@pytest.mark.parametrize("point", ["claimed", "spawned"])
async def test_a_crash_in_the_spawn_window_neither_sticks_nor_runs_twice(
    fleet_env: dict[str, str], project: Path, point: str, later: bool
) -> None:
    home = Path(fleet_env["AGENT_FLEET_HOME"])
    await crash_during_burst(fleet_env, project, point=point, nth=2, agents=5)
    async with SqliteStore(home / "fleet.db") as store:
        in_window = [t for t in await store.turns_with_status("running") if t.pid is None]
    assert in_window, "the probe should have left a claimed turn without a recorded pid"

    restart_env = {"TEST_ORPHAN_CLAIM_S": "0"} if later else {}
    async with server(fleet_env, project, **restart_env) as c:
        out = await call(c, "wait_for_agents", timeout_s=30)
        assert out["done"], f"turns stuck after the restart: {out}"
        status = await call(c, "get_agent_status")
        assert status["fleet"].get("running", 0) == 0
        rows = out["finished"]
        bad = [r["name"] for r in rows if r["status"] != "succeeded"]
        detail: list[Any] = (await call(c, "get_agent_status", agents=bad))["agents"] if bad else []
        assert rows and not bad, f"not succeeded: {detail}"  # each one's detail (its turn's error), not truncated

    async with SqliteStore(home / "fleet.db") as store:
        for agent in await store.list_agents():
            turns = await store.turns_of(agent.id)
            runs = (home / "agents" / agent.id / "tally.log").read_text().splitlines()
            assert runs == [f"done-{t.n}" for t in turns], f"{agent.name} ran {runs} for {len(turns)} turn(s)"
            for t in turns:
                assert t.result_text == f"done-{t.n}"  # one run, one transcript line


def test_a_second_spawn_of_a_started_turn_runs_nothing(tmp_path: Path) -> None:
    """Two spawns of the same turn (the old claim's and the requeued one's): the program runs once; the second
    spawn hands back the first one's process."""
    from agent_fleet_mcp.runners import process as proc
    from agent_fleet_mcp.runners.base import LaunchPlan

    files = proc.TurnFiles.for_turn(tmp_path / "home" / "agents" / "a" / "turns", 1)  # the home is tmp_path/home
    side = tmp_path / "side.log"
    plan = LaunchPlan(
        argv=[sys.executable, "-c", f"open({str(side)!r}, 'a').write('ran\\n')"], env={}, cwd=tmp_path,
        stdin_text="x",
    )  # fmt: skip
    first = proc.spawn(plan, files)
    deadline = time.monotonic() + 30
    while started.read(files.exit, now=time.time()) is None:  # the wrapper's first act
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = proc.spawn(plan, files)
    assert second.pid == first.pid
    mark = started.read(files.exit, now=0.0)
    assert mark is not None and mark.pid == first.pid
    # and a wrapper started behind the pre-check's back (the race) refuses to run the program
    raced = proc.subprocess.Popen(["/bin/sh", "-c", proc._WRAPPER, str(files.exit), *plan.argv])  # pyright: ignore[reportPrivateUsage]
    assert raced.wait(timeout=30) == started.DUPLICATE_EXIT
    deadline = time.monotonic() + 30
    while proc.is_alive(first.pid, first.start_time) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.exit_code(files, first.pid) == 0
    assert side.read_text() == "ran\n"
