"""The worker's `bash` tool: nothing a command starts outlives the call (background jobs, nohup, setsid, double
fork), and nothing outlives the turn when the turn is deleted mid-command. Real worker processes (plain and forked
by the fork server), the scripted Messages API; survivors counted with a /proc scan for a marker."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import containment, forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall

from .proc_scan import carrying, wait_until_none
from .test_containment import MODES, skip_unless_available

pytestmark = pytest.mark.anyio


def escapes(marker: str, *, then: str = "echo started") -> str:
    """A bash command whose children try every way out, each carrying the marker in its environment."""
    return (
        f"export BRK_MARKER={marker}; "
        "sleep 300 & "
        "nohup sleep 300 >/dev/null 2>&1 & "
        "setsid sleep 300 >/dev/null 2>&1 < /dev/null & "
        "(setsid sh -c 'sleep 300 & exit 0' >/dev/null 2>&1 < /dev/null &); "
        f"{then}"
    )


@pytest.fixture
def marker() -> Iterator[str]:
    m = f"brk-{uuid.uuid4().hex}"
    yield m
    for pid in carrying(m):  # a failed test leaves no sleepers behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(params=[f"{how}-{mode}" for mode in MODES for how in ("forkserver", "plain")])
def worker_env(request: Any, tmp_path: Path, fleet_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A worker forked by the fork server or spawned plainly, in each containment mode (tests/core/test_containment)."""
    how, mode = str(request.param).split("-")
    skip_unless_available(mode)
    env = dict(fleet_env, ANTHROPIC_API_KEY="test")
    if mode != "strongest":
        env[containment.MODE_ENV] = mode
    if how == "plain":
        env[forkserver.DISABLE_ENV] = "0"
    yield env
    forkserver.stop(Path(env["AGENT_FLEET_HOME"]))


async def test_bash_background_jobs_end_with_the_call(worker_env: dict[str, str], project: Path, marker: str) -> None:
    probe = f"sleep 0.5; grep -l {marker} /proc/[0-9]*/environ 2>/dev/null | wc -l"
    script = [ToolCall("bash", {"command": escapes(marker)}), ToolCall("bash", {"command": probe}), "done"]
    with ScriptedModelServer(script) as srv:
        env = dict(worker_env, ANTHROPIC_BASE_URL=srv.base_url)
        settings = Settings(home=Path(env["AGENT_FLEET_HOME"]), project_dir=project, env=env, poll_interval_s=0.05)
        async with Client(build_server(settings)) as c:
            await c.call_tool("create_agent", {"name": "w", "runner": "anthropic", "permission": "readwrite",
                                               "prompt": "go"})  # fmt: skip
            res = await c.call_tool("wait_for_agents", {"agents": ["w"], "timeout_s": 40})
            assert res.structured_content is not None
            assert res.structured_content["finished"][0]["status"] == "succeeded", res.structured_content
        srv.assert_complete()
        second = srv.message_requests[2].body["messages"][-1]["content"][0]["content"]
    assert wait_until_none(marker) == []
    assert str(second).split("\n")[0].strip() == "0", second  # already gone when the next command ran


async def test_deleting_the_agent_mid_command_leaves_nothing(
    worker_env: dict[str, str], project: Path, marker: str
) -> None:
    script = [ToolCall("bash", {"command": escapes(marker, then="sleep 300")}), "never"]
    with ScriptedModelServer(script) as srv:
        env = dict(worker_env, ANTHROPIC_BASE_URL=srv.base_url)
        settings = Settings(home=Path(env["AGENT_FLEET_HOME"]), project_dir=project, env=env, poll_interval_s=0.05,
                            kill_grace_s=1.0)  # fmt: skip
        async with Client(build_server(settings)) as c:
            await c.call_tool("create_agent", {"name": "w", "runner": "anthropic", "permission": "readwrite",
                                               "prompt": "go"})  # fmt: skip
            with anyio.fail_after(30):
                while len(carrying(marker)) < 4:
                    await anyio.sleep(0.05)
            await c.call_tool("delete_agent", {"agents": "all"})
    assert wait_until_none(marker) == []
