"""claude-code agents through the whole stack: MCP tools -> fleet -> real `claude` CLI -> scripted Messages API.
Conversation continuity (--resume), status/cost per turn, and the transcript rendered through the parser."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners.headless import find_cli
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.testing import ScriptedModelServer

pytestmark = [pytest.mark.anyio, pytest.mark.claude_cli]


@pytest.fixture(autouse=True)
def need_claude() -> None:
    if find_cli("claude", os.environ) is None:
        msg = "!!! real `claude` CLI not installed (bash scripts/install-tools.sh claude): fleet e2e NOT RUN !!!"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def ok(res: Any) -> dict[str, Any]:
    assert not res.is_error, res.content
    return res.structured_content


async def test_claude_code_agent_two_turns(tmp_path: Path, project: Path, fleet_env: dict[str, str]) -> None:
    (project / "notes.md").write_text("The launch code word is PELICAN.\n")
    with ScriptedModelServer() as srv:  # default policy: list, read, grep, answer
        env = dict(fleet_env)
        env.update(
            ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="test", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            HOME=str(tmp_path / "claude-home"), CLAUDECODE="1",
        )  # fmt: skip
        (tmp_path / "claude-home").mkdir()
        settings = Settings(home=tmp_path / "home", project_dir=project, env=env, poll_interval_s=0.05)
        async with Client(build_server(settings)) as c:
            created = ok(await c.call_tool("create_agent", {
                "name": "cc", "runner": "claude-code", "model": "claude-sonnet-4-5", "max_turns": 8,
                "prompt": "What does notes.md say about the code word?",
            }))  # fmt: skip
            assert created["agent"]["name"] == "cc"
            done = ok(await c.call_tool("wait_for_agents", {"agents": ["cc"], "timeout_s": 45}))
            assert done["done"], done
            row = ok(await c.call_tool("get_agent_status", {"agents": ["cc"]}))["agents"][0]
            assert row["turn_status"] == "succeeded", row
            assert row["tool_calls"] >= 2 and row["reads"] >= 1
            assert row["cost_usd"] is not None and row["cost_usd"] > 0
            first_cost = row["cost_usd"]
            out = ok(await c.call_tool("get_agent_output", {"agent": "cc"}))
            assert "notes.md" in out["text"] and "PELICAN" in out["text"]
            n_requests = len(srv.message_requests)

            ok(await c.call_tool("command_agent", {"agent": "cc", "prompt": "Which files did you read?"}))
            done = ok(await c.call_tool("wait_for_agents", {"agents": ["cc"], "timeout_s": 45}))
            row = ok(await c.call_tool("get_agent_status", {"agents": ["cc"]}))["agents"][0]
            assert row["turn"] == 2 and row["turn_status"] == "succeeded", row
            # --resume: the second turn's first request carries the first turn's conversation
            later = srv.message_requests[n_requests:]
            history = " ".join(str(m.get("content")) for m in later[0].body["messages"])
            assert "What does notes.md say about the code word?" in history
            # cost per turn is a delta of claude's cumulative total_cost_usd, so the agent total grows by turn 2 only
            assert row["cost_usd"] > first_cost
            async with SqliteStore(settings.db_path) as store:
                agent = await store.get_agent("cc")
                assert agent is not None and agent.session_id
                t1, t2 = await store.turns_of(agent.id)
            raw = [json.loads(x) for x in Path(t2.out_path or "").read_text().splitlines() if x.startswith("{")]
            cumulative = next(e["total_cost_usd"] for e in raw if e.get("type") == "result")
            assert t1.cost_usd is not None and t2.cost_usd is not None
            assert abs((t1.cost_usd + t2.cost_usd) - cumulative) < 1e-6  # turn 2 recorded as a delta
            assert abs(row["cost_usd"] - cumulative) < 1e-5
            tail = ok(await c.call_tool("get_agent_output", {"agent": "cc", "mode": "tail"}))
            assert "started claude-code" in tail["text"] or "session" in tail["text"]
            ok(await c.call_tool("delete_agent", {"agents": "all"}))
