"""What the server's handlers share: the lifespan's ``AppState`` (from a request's typed Context) and the
``RunningApp`` slot that holds it for static resources, which get no Context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError

from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.reader import FleetReader


@dataclass
class AppState:
    """What the lifespan hands every request: the fleet for writes, its reader for reads."""

    fleet: Fleet
    reader: FleetReader


def app_state(ctx: Context[AppState, Any]) -> AppState:
    return ctx.request_context.lifespan_context


class RunningApp:
    """The app state of one server while its lifespan runs. Static resources get no Context (the SDK refuses a
    Context parameter on a URI without variables), so build_server passes them this, owned by the server."""

    def __init__(self) -> None:
        self.state: AppState | None = None

    def get(self) -> AppState:
        if self.state is None:
            raise ResourceError("the fleet is not running")
        return self.state
