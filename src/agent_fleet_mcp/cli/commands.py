"""The bodies of `agent-fleet status`, `watch`, `logs`, `diff`, `cost` and `agents`: read through the reader (the store
opened read-only, never created), render with render.py, print. Called by main.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import aclosing
from pathlib import Path

import anyio
import click
from rich.live import Live
from rich.text import Text

from agent_fleet_mcp.catalog import load_catalog, trust_command
from agent_fleet_mcp.cli.render import (
    LogLines,
    catalog_view,
    cost_view,
    detail_view,
    diff_view,
    log_header,
    make_console,
    status_view,
    watch_frame,
)
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import NotFound
from agent_fleet_mcp.reader import EMPTY_FLEET, not_found_message
from agent_fleet_mcp.reader_models import Note
from agent_fleet_mcp.reader_reports import empty_status, open_reader


def echo_json(data: str) -> None:
    click.echo(data)


async def show_status(settings: Settings, *, agent: str | None, as_json: bool, include_all: bool) -> None:
    console = make_console()
    async with open_reader(settings) as reader:
        if agent is not None:
            if reader is None:
                raise NotFound(not_found_message(agent, []))
            detail = await reader.agent_detail(agent)
            if as_json:
                echo_json(detail.model_dump_json(indent=2))
            else:
                console.print(detail_view(detail))
            return
        report = empty_status(settings) if reader is None else await reader.status_report(include_all=include_all)
    if as_json:
        echo_json(report.model_dump_json(indent=2))
    else:
        console.print(status_view(report, width=console.width))


async def show_cost(settings: Settings, *, since: float | None, as_json: bool) -> None:
    async with open_reader(settings) as reader:
        if reader is None:
            if as_json:
                echo_json(json.dumps({"since": since, "agents": 0, "note": EMPTY_FLEET}))
            else:
                make_console().print(Text(EMPTY_FLEET))
            return
        report = await reader.cost_report(since=since)
    if as_json:
        echo_json(report.model_dump_json(indent=2))
    else:
        make_console().print(cost_view(report))


async def show_logs(settings: Settings, *, agent: str, turn: int | None, follow: bool, raw: bool) -> None:
    out = make_console(soft_wrap=True)
    err = make_console(stderr=True, soft_wrap=True)
    async with open_reader(settings) as reader:
        if reader is None:
            raise NotFound(not_found_message(agent, []))
        row = await reader.find_agent(agent)
        t = await reader.pick_turn(row, turn)
        latest = await reader.latest_turn(row)
        last = latest.n if latest else t.n
        path = reader.turn_files(row.id, t.n).out
        header = log_header(row.name, row.spec.runner, t.n, last, t.status, t.prompt, path)
        (err if raw else out).print(header)
        lines = LogLines()
        async with aclosing(reader.turn_log(row, t, follow=follow, raw=raw)) as items:
            async for item in items:
                if isinstance(item, Note):
                    (err if raw else out).print(Text(f"── {item.text}", style="dim"))
                elif isinstance(item, str):
                    click.echo(item)
                else:
                    out.print(lines.render(item))


async def show_diff(settings: Settings, *, agent: str) -> None:
    """The agent's diff against its base: coloured on a terminal, plain (for `git apply`, `less`) otherwise."""
    async with open_reader(settings) as reader:
        if reader is None:
            raise NotFound(not_found_message(agent, []))
        diff = await reader.diff(await reader.find_agent(agent))
    console = make_console(soft_wrap=True)
    if not diff:
        make_console(stderr=True).print(Text(f"{agent}: no changes against its base", style="dim"))
    elif console.is_terminal:
        console.print(diff_view(diff), end="")
    else:
        click.echo(diff, nl=False)


async def watch(settings: Settings, *, interval: float, include_all: bool) -> None:
    """Redraw the status every ``interval`` seconds (alternate screen, no flicker) until cancelled (Ctrl-C). A
    missing fleet is waited for."""
    console = make_console()
    with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False) as live:
        while True:
            async with open_reader(settings) as reader:
                while True:
                    report = None if reader is None else await reader.status_report(include_all=include_all)
                    frame = watch_frame(report, home=settings.home, interval=interval, width=console.width)
                    live.update(frame, refresh=True)
                    await anyio.sleep(interval)
                    if reader is None:
                        break  # look for the database again


def show_catalog(project_dir: Path, env: Mapping[str, str], *, as_json: bool) -> None:
    from agent_fleet_mcp import deprecation  # only `agents` needs it

    console = make_console()
    cat = load_catalog(project_dir, env)
    defs = sorted(cat.definitions.values(), key=lambda d: d.name)
    notices = deprecation.definition_notices(defs)
    if as_json:
        data = {
            "agents": [
                {"name": d.name, "description": d.description, "tags": list(d.tags), "runner": d.spec.runner,
                 "model": d.spec.model, "permission": d.spec.permission, "source": d.source,
                 "visibility": d.visibility}
                for d in defs
            ],
            "problems": [str(p) for p in cat.problems] + [str(n) for n in notices],
            "untrusted": [{"path": u.path, "name": u.name, "changed": u.changed, "trust": trust_command(u.path)}
                          for u in cat.untrusted],
            "shadowed": [{"name": n, "used": used, "shadowed": hidden} for n, used, hidden in cat.shadowed],
            "dirs": [str(d) for d in cat.dirs],
        }  # fmt: skip
        console.print_json(json.dumps(data))
        return
    console.print(catalog_view(cat, defs, notices, project_dir))
