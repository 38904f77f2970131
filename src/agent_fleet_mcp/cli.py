"""Command-line entry points: `agent-fleet-mcp` (the server) and `agent-fleet` (for humans). Thin: no SQL, no
subprocess calls."""

from __future__ import annotations

import os
from pathlib import Path

import click

from agent_fleet_mcp import __version__


def _serve(http: bool, host: str, port: int) -> None:
    from agent_fleet_mcp import logs
    from agent_fleet_mcp.config import Settings
    from agent_fleet_mcp.server import build_server

    settings = Settings.from_env()
    logs.configure(settings.logs_dir, stderr_level=os.environ.get("AGENT_FLEET_LOG_LEVEL", "WARNING"))
    server = build_server(settings)
    if http:
        server.run("streamable-http", host=host, port=port, streamable_http_path="/mcp")
    else:
        server.run("stdio")


_http_opt = click.option("--http", is_flag=True, help="Serve streamable HTTP at /mcp instead of stdio.")
_host_opt = click.option("--host", default="127.0.0.1", show_default=True)
_port_opt = click.option("--port", default=8765, show_default=True, type=int)


@click.command(name="agent-fleet-mcp")
@_http_opt
@_host_opt
@_port_opt
@click.version_option(__version__)
def serve_cmd(http: bool, host: str, port: int) -> None:
    """Run the agent-fleet MCP server (stdio by default)."""
    _serve(http, host, port)


def serve_main(argv: list[str]) -> None:
    serve_cmd.main(args=argv, prog_name="agent-fleet-mcp")


@click.group()
@click.version_option(__version__)
def main() -> None:
    """agent-fleet: run and watch a fleet of AI agents (the MCP server is `agent-fleet serve`)."""


@main.command()
@_http_opt
@_host_opt
@_port_opt
def serve(http: bool, host: str, port: int) -> None:
    """Run the MCP server (same as agent-fleet-mcp)."""
    _serve(http, host, port)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def agents(as_json: bool) -> None:
    """List the task-agent catalog: name, runner, tags, source file, and any definition errors."""
    from agent_fleet_mcp import cli_views

    cli_views.show_catalog(Path.cwd(), dict(os.environ), as_json=as_json)


@main.command("scripted-model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
def scripted_model(host: str, port: int) -> None:
    """Serve the offline scripted Messages API (point ANTHROPIC_BASE_URL at it)."""
    from agent_fleet_mcp.testing import run_standalone

    run_standalone(host=host, port=port)
