"""anthropic agents through the MCP tools (in-process server, real worker processes, scripted model): files read
and written reach status and output, cost is priced, and command_agent continues the conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.testing import ScriptedModelServer

pytestmark = pytest.mark.anyio


def ok(res: Any) -> dict[str, Any]:
    assert not res.is_error, res.content
    return res.structured_content


async def test_anthropic_agent_reads_edits_and_continues(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    (project / "app.py").write_text('GREETING = "hello"\n')
    home = tmp_path / "home"
    with ScriptedModelServer() as srv:
        env = dict(fleet_env, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="test", AGENT_FLEET_HOME=str(home))
        settings = Settings(home=home, project_dir=project, env=env, poll_interval_s=0.05)
        try:
            async with Client(build_server(settings)) as c:
                ok(await c.call_tool("create_agent", {
                    "name": "w", "runner": "anthropic", "model": "claude-sonnet-5-5", "permission": "readwrite",
                    "prompt": 'replace "hello" with "bonjour" in app.py',
                }))  # fmt: skip
                done = ok(await c.call_tool("wait_for_agents", {"agents": ["w"], "timeout_s": 45}))
                assert done["finished"][0]["status"] == "succeeded", done
                row = ok(await c.call_tool("get_agent_status", {"agents": ["w"]}))["agents"][0]
                assert row["cost_usd"] is not None and row["cost_usd"] > 0 and row["context_pct"] is not None
                assert row["reads"] >= 1 and row["writes"] == 1
                assert (project / "app.py").read_text() == 'GREETING = "bonjour"\n'
                out = ok(await c.call_tool("get_agent_output", {"agent": "w"}))
                assert out["files_written"] == ["app.py"] and out["writes_total"] == 1
                assert "app.py" in out["files_read"]
                first_requests = len(srv.message_requests)

                ok(await c.call_tool("command_agent", {"agent": "w", "prompt": "What did you change?"}))
                done = ok(await c.call_tool("wait_for_agents", {"agents": ["w"], "timeout_s": 45}))
                assert done["finished"][0]["turn"] == 2 and done["finished"][0]["status"] == "succeeded"
                follow_up = srv.message_requests[first_requests].body["messages"]
                assert 'replace "hello" with "bonjour" in app.py' in str(follow_up[0]["content"])  # history kept
                ok(await c.call_tool("delete_agent", {"agents": "all"}))
        finally:
            forkserver.stop(home)
