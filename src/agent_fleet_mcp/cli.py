"""Command-line entry points: `agent-fleet-mcp` (the server) and `agent-fleet` (for humans: status, watch, logs,
cost, agents, demo). Thin: no SQL, no subprocess calls; reading is observe.py, rendering cli_views.py. Fleet errors
become exit code 1 with their message; Ctrl-C ends `watch` and `logs -f` quietly with exit code 0."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent_fleet_mcp import __version__
from agent_fleet_mcp.errors import FleetError

if TYPE_CHECKING:
    from agent_fleet_mcp.config import Settings


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


_json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON (same data).")


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
    """List the task-agent catalog: name, runner, model, tags and source file, then shadowed definitions (a name
    defined again further down the search path), definition errors and the folders searched."""
    from agent_fleet_mcp import cli_views

    cli_views.show_catalog(Path.cwd(), dict(os.environ), as_json=as_json)


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "trust_all", is_flag=True, help="Every untrusted file `agent-fleet agents` lists, except ones "
              "an agent turn wrote (name those one by one).")  # fmt: skip
@click.option("--list", "list_only", is_flag=True, help="The trusted files, and whether they changed since.")
@click.option("--revoke", is_flag=True, help="Forget the trust of FILE...")
def trust(files: tuple[Path, ...], trust_all: bool, list_only: bool, revoke: bool) -> None:
    """Trust task-agent definition FILE... as they are now (review them first).

    A definition file outside the built-ins is used only once trusted; changing it needs a new trust. The
    trust (sha256 of each file) is kept in the fleet home (AGENT_FLEET_HOME, default ~/.agent-fleet)."""
    from agent_fleet_mcp.cli_trust import run_trust

    try:
        code = run_trust(
            files, trust_all=trust_all, list_only=list_only, revoke=revoke, project_dir=Path.cwd(),
            env=dict(os.environ),
        )  # fmt: skip
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        raise SystemExit(code)


@main.command()
@_json_opt
def doctor(as_json: bool) -> None:
    """Check this machine and the fleet home: containment, permissions, store, runners. Exit code 1 on a failure."""
    from agent_fleet_mcp import cli_views
    from agent_fleet_mcp.doctor import run_checks

    checks = run_checks(_settings())
    cli_views.show_checks(checks, as_json=as_json)
    if any(c.level == "fail" for c in checks):
        raise SystemExit(1)


@main.command("scripted-model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
def scripted_model(host: str, port: int) -> None:
    """Serve the offline scripted Messages API (point ANTHROPIC_BASE_URL at it)."""
    from agent_fleet_mcp.testing import run_standalone

    run_standalone(host=host, port=port)


# -- observability: status, watch, logs, cost ------------------------------------------------------------------


def _settings() -> Settings:
    from agent_fleet_mcp.config import Settings

    try:
        return Settings.from_env()
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None


def _run(fn: Callable[..., Awaitable[None]], /, *, interruptible: bool = False, **kwargs: Any) -> None:
    """Run an async command body: FleetError -> exit 1 with its message; Ctrl-C -> exit 0 when ``interruptible``
    (watch, follow); a closed pipe (`| head`) -> quiet exit."""
    import anyio

    try:
        anyio.run(functools.partial(fn, **kwargs))
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        if not interruptible:
            raise
    except BrokenPipeError:
        try:  # keep the interpreter's final flush from failing again on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(1)


@main.command()
@click.argument("agent", required=False)
@_json_opt
@click.option("--all", "include_all", is_flag=True, help="Also deleted agents and recent finished batches.")
def status(agent: str | None, as_json: bool, include_all: bool) -> None:
    """The fleet at a glance, or one AGENT in detail (turns, files read and written, last error, result).

    Reads the fleet home of AGENT_FLEET_HOME (default ~/.agent-fleet) while servers keep running; never creates
    it. Exit code 1 for an unknown agent."""
    from agent_fleet_mcp import cli_views

    _run(cli_views.show_status, settings=_settings(), agent=agent, as_json=as_json, include_all=include_all)


@main.command()
@click.option(
    "--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between refreshes."
)
@click.option("--all", "include_all", is_flag=True, help="Also deleted agents and recent finished batches.")
def watch(interval: float, include_all: bool) -> None:
    """`status`, live, redrawn in place until Ctrl-C."""
    from agent_fleet_mcp import cli_views

    _run(cli_views.watch, interruptible=True, settings=_settings(), interval=interval, include_all=include_all)


@main.command()
@click.argument("agent")
@click.option("--turn", "turn", type=click.IntRange(min=1), help="Turn number (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the turn ends (or Ctrl-C).")
@click.option("--raw", is_flag=True, help="The transcript lines as the runner wrote them (e.g. for jq).")
def logs(agent: str, turn: int | None, follow: bool, raw: bool) -> None:
    """What AGENT did in a turn: tool calls, text, results, errors, usage (any runner's transcript)."""
    from agent_fleet_mcp import cli_views

    _run(cli_views.show_logs, interruptible=True, settings=_settings(), agent=agent, turn=turn, follow=follow, raw=raw)


@main.command()
@click.option("--since", help="Only turns started since: 30m, 1h, 2d, 1w, or a local date/time (2026-11-20).")
@_json_opt
def cost(since: str | None, as_json: bool) -> None:
    """Tokens and cost by agent, by runner and by model ('?' where the cost is unknown)."""
    from agent_fleet_mcp import cli_views, observe

    try:
        since_ts = None if since is None else observe.parse_since(since)
    except FleetError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    _run(cli_views.show_cost, settings=_settings(), since=since_ts, as_json=as_json)


@main.command()
@click.option(
    "--live",
    is_flag=True,
    help="Use the real Anthropic API (needs ANTHROPIC_API_KEY) instead of the offline scripted model.",
)
@click.option("--keep", is_flag=True, help="Keep the demo's fleet home afterwards (look at it with status/logs).")
def demo(live: bool, keep: bool) -> None:
    """Play the orchestration pattern end to end (offline by default: scripted model, real MCP server and client)."""
    from agent_fleet_mcp.demo import run_demo

    code = run_demo(live=live, keep=keep)
    if code:
        raise SystemExit(code)
