"""Over real stdio (spawning `agent-fleet-mcp`): agents outlive the server, a new server on the same home
re-attaches to live turns and closes dead ones from their transcripts; nothing stays `running`."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client, StdioServerParameters

from .helpers import call, wait_all

pytestmark = pytest.mark.anyio

SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")


@asynccontextmanager
async def stdio_client(env: dict[str, str], cwd: Path) -> AsyncGenerator[Any]:
    params = StdioServerParameters(command=SERVER, args=[], env=env, cwd=str(cwd))
    async with Client(params, mode="legacy") as c:
        yield c


def server_pids(home: str) -> list[int]:
    out: list[int] = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "agent-fleet-mcp" in " ".join(p.cmdline()) and p.environ().get("AGENT_FLEET_HOME") == home:
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


async def test_stdio_tools_and_prompts(fleet_env: dict[str, str], project: Path) -> None:
    async with stdio_client(fleet_env, project) as c:
        assert len((await c.list_tools()).tools) == 9
        prompts = {p.name for p in (await c.list_prompts()).prompts}
        assert prompts == {"orchestrate", "review", "fleet"}
        got = await c.get_prompt("orchestrate", {"task": "add a --verbose flag"})
        text = got.messages[0].content.text
        assert "add a --verbose flag" in text and "run_agents" in text and "wait_for_agents" in text
        await call(c, "create_agent", name="s1", template="echo", prompt="over stdio")
        await wait_all(c, ["s1"])
        assert "echo: over stdio" in (await call(c, "get_agent_output", agent="s1"))["text"]


async def test_agents_survive_server_and_are_reattached(fleet_env: dict[str, str], project: Path) -> None:
    home = fleet_env["AGENT_FLEET_HOME"]
    async with stdio_client(fleet_env, project) as c:
        await call(c, "create_agent", name="long", template="sleeper", prompt="3")
        await call(c, "create_agent", name="short", template="sleeper", prompt="0.5")
        await call(c, "create_agent", name="doomed", template="hanger", prompt="x")
        status = await call(c, "get_agent_status")
        assert status["fleet"]["running"] == 3
        [server] = server_pids(home)
        os.kill(server, signal.SIGKILL)  # the host dies without any shutdown
        with pytest.raises(BaseException):  # noqa: B017 - the session is gone; any error is fine
            await c.call_tool("get_agent_status", {})
    from agent_fleet_mcp.store.sqlite import SqliteStore

    async with SqliteStore(Path(home) / "fleet.db") as store:
        names = {a.id: a.name for a in await store.list_agents()}
        turns = {names[t.agent_id]: t for t in await store.turns_with_status("running")}
    assert set(turns) == {"long", "short", "doomed"}
    doomed = turns["doomed"]
    assert doomed.pid and psutil.pid_exists(doomed.pid)
    os.killpg(doomed.pid, signal.SIGKILL)  # dies hard while no server watches: no exit status recorded
    time.sleep(1.0)  # `short` finishes while no server is up
    async with stdio_client(fleet_env, project) as c:
        out = await wait_all(c, timeout_s=20)
        rows = {r["name"]: r for r in out["finished"]}
        assert rows["short"]["status"] == "succeeded"  # closed from its transcript + exit file
        assert rows["long"]["status"] == "succeeded"  # re-attached while alive, followed to the end
        assert rows["doomed"]["status"] == "lost"
        doomed = (await call(c, "get_agent_status", agents=["doomed"]))["agents"][0]
        assert doomed["status"] == "failed" and "without a result" in doomed["error"]
        text = (await call(c, "get_agent_output", agent="long"))["text"]
        assert text.endswith("done")
        assert (await call(c, "get_agent_status"))["fleet"].get("running", 0) == 0


async def test_graceful_close_leaves_agents_running(fleet_env: dict[str, str], project: Path) -> None:
    async with stdio_client(fleet_env, project) as c:
        await call(c, "create_agent", name="bg", template="sleeper", prompt="1.5")
        pid_line = await call(c, "get_agent_status")
        assert pid_line["fleet"]["running"] == 1
    # server closed (stdin EOF); the agent keeps running and finishes on its own
    async with stdio_client(fleet_env, project) as c:
        row = (await call(c, "get_agent_status", agents=["bg"]))["agents"][0]
        assert row["turn_status"] in ("running", "succeeded")
        out = await wait_all(c, ["bg"], timeout_s=20)
        assert out["finished"][0]["status"] == "succeeded"
        assert (await call(c, "get_agent_output", agent="bg"))["turn_status"] == "succeeded"
