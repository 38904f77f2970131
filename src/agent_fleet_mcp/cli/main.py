"""Command-line entry points: `agent-fleet-mcp` (the server) and `agent-fleet` (for humans: status, watch, logs,
diff, cost, agents, demo). Thin: no SQL, no subprocess calls; command bodies are commands.py (reading through
reader.py), rendering render.py. Fleet errors become exit code 1 with their message; Ctrl-C ends `watch` and
`logs -f` quietly with exit code 0."""

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


def _serve(http: bool, host: str, port: int, allowed_hosts: tuple[str, ...] = (), allow_remote: bool = False) -> None:
    from agent_fleet_mcp.config import Settings

    if not http and (allowed_hosts or allow_remote):
        raise click.UsageError("--allowed-host and --allow-remote only apply with --http")
    try:
        settings = Settings.from_env()
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    _refuse_damaged_store(settings)  # before importing the server: a damaged store exits at once
    from agent_fleet_mcp import http_auth, logs
    from agent_fleet_mcp.server import build_server

    token = None
    if http:  # refuse before anything listens
        try:
            http_auth.check_bind(host, allow_remote=allow_remote)
            token = http_auth.load_or_create_token(settings.home, settings.env)
        except FleetError as exc:
            raise click.ClickException(str(exc)) from None
    logs.configure(settings.logs_dir, stderr_level=os.environ.get("AGENT_FLEET_LOG_LEVEL", "WARNING"))
    server = build_server(settings)
    if token is None:
        server.run("stdio")
    else:
        click.echo(http_auth.startup_line(host, port, token), err=True)
        http_auth.serve_http(server, host=host, port=port, token=token, allowed_hosts=allowed_hosts)


def _refuse_damaged_store(settings: Settings) -> None:
    """A damaged fleet.db: exit 1 at once with the file and the repair, before any MCP traffic (stderr only)."""
    from agent_fleet_mcp.errors import StoreDamaged
    from agent_fleet_mcp.store.sqlite import SqliteStore

    async def check() -> None:
        await SqliteStore(settings.db_path).check_intact()

    import anyio

    try:
        anyio.run(check)
    except StoreDamaged as exc:
        click.echo(f"agent-fleet-mcp: {exc}", err=True)
        raise SystemExit(1) from None


def _serve_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The options of `agent-fleet-mcp` and `agent-fleet serve`."""
    options = [
        click.option(
            "--http",
            is_flag=True,
            help="Serve streamable HTTP at /mcp instead of stdio (clients need the bearer token that "
            "`agent-fleet http-token` prints).",
        ),
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (--http)."),
        click.option("--port", default=8765, show_default=True, type=int),
        click.option(
            "--allowed-host",
            "allowed_hosts",
            multiple=True,
            metavar="NAME[:PORT]",
            help="Also accept this Host/Origin (repeatable); the bind address and the loopback names always are.",
        ),
        click.option(
            "--allow-remote",
            is_flag=True,
            help="Allow a --host reachable from the network (0.0.0.0, ::, a LAN address): anyone who can reach "
            "it and has the token can run agents as you.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command(name="agent-fleet-mcp")
@_serve_options
@click.version_option(__version__)
def serve_cmd(http: bool, host: str, port: int, allowed_hosts: tuple[str, ...], allow_remote: bool) -> None:
    """Run the agent-fleet MCP server (stdio by default)."""
    _serve(http, host, port, allowed_hosts, allow_remote)


def serve_main(argv: list[str]) -> None:
    serve_cmd.main(args=argv, prog_name="agent-fleet-mcp")


_json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON (same data).")


@click.group()
@click.version_option(__version__)
def main() -> None:
    """agent-fleet: run and watch a fleet of AI agents (the MCP server is `agent-fleet serve`)."""


@main.command()
@_serve_options
def serve(http: bool, host: str, port: int, allowed_hosts: tuple[str, ...], allow_remote: bool) -> None:
    """Run the MCP server (same as agent-fleet-mcp)."""
    _serve(http, host, port, allowed_hosts, allow_remote)


@main.command("http-token")
@click.option("--new", "renew", is_flag=True,
              help="Write a new token over the old one (running HTTP servers keep the old one until restarted).")
def http_token(renew: bool) -> None:
    """Print the bearer token that `agent-fleet-mcp --http` requires (AGENT_FLEET_HTTP_TOKEN when set, else the
    one kept in the fleet home, created on first use). For example:
    claude mcp add --transport http fleet http://127.0.0.1:8765/mcp --header "Authorization: Bearer $(agent-fleet
    http-token)". To change it, use --new rather than deleting the file: agents running at that moment would be
    able to read a new file (docs/containment.md)."""
    from agent_fleet_mcp.http_auth import load_or_create_token, renew_token

    settings = _settings()
    try:
        token = (renew_token if renew else load_or_create_token)(settings.home, settings.env)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token.value)
    if renew:
        click.echo("new token written; restart any running `agent-fleet-mcp --http` to use it", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def agents(as_json: bool) -> None:
    """List the task-agent catalog: name, runner, model, tags and source file, then shadowed definitions (a name
    defined again further down the search path), definition errors and the folders searched."""
    from agent_fleet_mcp.cli import commands

    commands.show_catalog(Path.cwd(), dict(os.environ), as_json=as_json)


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
    from agent_fleet_mcp.cli.trust import run_trust

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
@click.option(
    "--repair", is_flag=True,
    help="Keep a damaged fleet.db aside (fleet.db.damaged-<time>) and rebuild it from the turn files on disk.",
)  # fmt: skip
def doctor(as_json: bool, repair: bool) -> None:
    """Check this machine and the fleet home: containment, permissions, store, runners. Exit code 1 on a failure."""
    from agent_fleet_mcp.cli import doctor as doctor_view
    from agent_fleet_mcp.doctor import run_checks

    if repair:
        from agent_fleet_mcp.repair import repair_store

        report = repair_store(_settings())
        doctor_view.show_repair(report, as_json=as_json)
        if not report.repaired and "nothing to repair" not in report.message:
            raise SystemExit(1)
        return
    checks = run_checks(_settings())
    doctor_view.show_checks(checks, as_json=as_json)
    if any(c.level == "fail" for c in checks):
        raise SystemExit(1)


@main.command("scripted-model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
def scripted_model(host: str, port: int) -> None:
    """Serve the offline scripted Messages API: set ANTHROPIC_BASE_URL to its URL and ANTHROPIC_API_KEY=dummy."""
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
    from agent_fleet_mcp.cli import commands

    _run(commands.show_status, settings=_settings(), agent=agent, as_json=as_json, include_all=include_all)


@main.command()
@click.option(
    "--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between refreshes."
)
@click.option("--all", "include_all", is_flag=True, help="Also deleted agents and recent finished batches.")
def watch(interval: float, include_all: bool) -> None:
    """`status`, live, redrawn in place until Ctrl-C."""
    from agent_fleet_mcp.cli import commands

    _run(commands.watch, interruptible=True, settings=_settings(), interval=interval, include_all=include_all)


@main.command()
@click.argument("agent")
@click.option("--turn", "turn", type=click.IntRange(min=1), help="Turn number (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the turn ends (or Ctrl-C).")
@click.option("--raw", is_flag=True, help="The transcript lines as the runner wrote them (e.g. for jq).")
def logs(agent: str, turn: int | None, follow: bool, raw: bool) -> None:
    """What AGENT did in a turn: tool calls, text, results, errors, usage (any runner's transcript)."""
    from agent_fleet_mcp.cli import commands

    _run(commands.show_logs, interruptible=True, settings=_settings(), agent=agent, turn=turn, follow=follow, raw=raw)


@main.command()
@click.argument("agent")
def diff(agent: str) -> None:
    """AGENT's changes in its git worktree against the commit it started from (committed turns and work in
    progress), as a unified diff: coloured on a terminal, plain when piped. Exit code 1 for an agent without a
    worktree."""
    from agent_fleet_mcp.cli import commands

    _run(commands.show_diff, settings=_settings(), agent=agent)


@main.command()
@click.option("--since", help="Only turns started since: 30m, 1h, 2d, 1w, or a local date/time (2026-11-20).")
@_json_opt
def cost(since: str | None, as_json: bool) -> None:
    """Tokens and cost by agent, by runner and by model ('?' where the cost is unknown)."""
    from agent_fleet_mcp.cli import commands
    from agent_fleet_mcp.reader_reports import parse_since

    try:
        since_ts = None if since is None else parse_since(since)
    except FleetError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    _run(commands.show_cost, settings=_settings(), since=since_ts, as_json=as_json)


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
