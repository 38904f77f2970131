"""The 2 resources: fleet://agents (static: it gets the server's ``RunningApp``, since the SDK gives static
resources no Context) and the template fleet://agents/{agent} (typed Context, like the tools)."""

from __future__ import annotations

import functools
import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from agent_fleet_mcp import views
from agent_fleet_mcp.errors import FleetError
from agent_fleet_mcp.schemas import StatusOut
from agent_fleet_mcp.server.state import AppState, RunningApp, app_state


async def fleet_resource(running: RunningApp) -> str:
    fleet = running.get().fleet
    rows = await views.agent_rows(fleet, await fleet.store.list_agents())
    return StatusOut(fleet=views.fleet_summary(rows), agents=rows).model_dump_json()


async def agent_resource(agent: str, ctx: Context[AppState, Any]) -> str:
    fleet = app_state(ctx).fleet
    try:
        row = await fleet.get_agent(agent)
    except FleetError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    [status] = await views.agent_rows(fleet, [row])
    turns = await fleet.store.turns_of(row.id)
    recent = ""
    if turns:
        recent = (await views.transcript_text(fleet, row, turns[-1]))[-views.RECENT_ACTIVITY_CHARS :]
    return json.dumps({"status": status.model_dump(mode="json"), "recent_activity": recent})


def register(mcp: MCPServer[AppState], running: RunningApp) -> None:
    mcp.resource(
        "fleet://agents", name="fleet", description="Fleet summary and one row per agent (JSON)",
        mime_type="application/json",
    )(functools.partial(fleet_resource, running))  # fmt: skip
    mcp.resource(
        "fleet://agents/{agent}", name="agent", description="One agent: status and recent activity (JSON)",
        mime_type="application/json",
    )(agent_resource)  # fmt: skip
