"""The 2 resources: fleet://agents (static: it gets the server's ``RunningApp``, since the SDK gives static
resources no Context) and the template fleet://agents/{agent} (typed Context, like the tools)."""

from __future__ import annotations

import functools
import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from agent_fleet_mcp.errors import FleetError
from agent_fleet_mcp.server.state import AppState, RunningApp, app_state


async def fleet_resource(running: RunningApp) -> str:
    return (await running.get().reader.status()).model_dump_json()


async def agent_resource(agent: str, ctx: Context[AppState, Any]) -> str:
    reader = app_state(ctx).reader
    try:
        row = await reader.get_agent(agent)
    except FleetError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    [status] = await reader.agent_rows([row])
    recent = await reader.recent_activity(row)
    return json.dumps({"status": status.model_dump(mode="json"), "recent_activity": recent})


def register(mcp: MCPServer[AppState], running: RunningApp) -> None:
    mcp.resource(
        "fleet://agents", name="fleet",
        description="Fleet summary and the bounded default rows of get_agent_status (JSON)",
        mime_type="application/json",
    )(functools.partial(fleet_resource, running))  # fmt: skip
    mcp.resource(
        "fleet://agents/{agent}", name="agent", description="One agent: status and recent activity (JSON)",
        mime_type="application/json",
    )(agent_resource)  # fmt: skip
