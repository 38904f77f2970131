"""Rendering of `agent-fleet doctor` (its checks) and `doctor --repair` (what was rebuilt): pure rich code."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from rich.text import Text

from agent_fleet_mcp.cli.render import make_console, make_table
from agent_fleet_mcp.doctor import Check
from agent_fleet_mcp.repair import RepairReport

_LEVEL_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def show_checks(checks: Sequence[Check], *, as_json: bool) -> None:
    console = make_console()
    if as_json:
        console.print_json(json.dumps({"checks": [dataclasses.asdict(c) for c in checks]}))
        return
    table = make_table(title="agent-fleet doctor", title_justify="left", title_style="bold")
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in checks:
        detail = Text(c.detail)
        if c.fix:
            detail.append(f"\n→ {c.fix}", style="dim")
        table.add_row(Text(c.name), Text(c.level, style=_LEVEL_STYLE[c.level]), detail)
    console.print(table)


def show_repair(report: RepairReport, *, as_json: bool) -> None:
    console = make_console()
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(report)))
        return
    console.print(Text(report.message, style="bold" if report.repaired else ""))
    for path in report.worktrees_pruned:
        console.print(f"  pruned stale worktree: {path}")
    for path in report.kept:
        console.print(f"  kept aside: {path}")
    if report.repaired:
        by = ", ".join(f"{n} {s}" for s, n in sorted(report.turns.items())) or "none"
        console.print(f"  agents: {report.agents} ({report.agents_from_db} with name and spec from the damaged file)")
        console.print(f"  turns: {sum(report.turns.values())} ({by})")
        for item in report.lost:
            console.print(Text(f"  not recoverable: {item}", style="yellow"))
        console.print("  next: start the server; `agent-fleet status` shows the rebuilt fleet")
