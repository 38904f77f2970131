"""The command line: `agent-fleet-mcp` (the server) and `agent-fleet` (for humans). main.py holds the click
commands, commands.py their bodies (reading through reader.py), render.py the rich rendering; doctor.py and
trust.py are the `doctor` and `trust` commands' own rendering and bodies."""

from agent_fleet_mcp.cli.main import main, serve_main

__all__ = ["main", "serve_main"]
