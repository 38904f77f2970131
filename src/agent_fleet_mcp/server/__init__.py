"""The MCP surface: exactly 9 tools (tools.py), 2 resources (resources.py), 3 prompts (prompts.py), put together
with the lifespan by ``build_server`` (app.py). Thin: validate, call the fleet, shape the output, turn FleetError
into ToolError (a message the model can act on)."""

from agent_fleet_mcp.server.app import INSTRUCTIONS, build_server
from agent_fleet_mcp.server.state import AppState

__all__ = ["INSTRUCTIONS", "AppState", "build_server"]
