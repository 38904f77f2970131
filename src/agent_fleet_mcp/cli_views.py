"""Rendering for the human CLI (rich tables). Output goes to the terminal: this module is never used by the
stdio server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent_fleet_mcp.catalog import load_catalog


def show_catalog(project_dir: Path, env: Mapping[str, str], *, as_json: bool) -> None:
    console = Console()
    cat = load_catalog(project_dir, env)
    defs = sorted(cat.definitions.values(), key=lambda d: d.name)
    if as_json:
        data = {
            "agents": [
                {"name": d.name, "description": d.description, "tags": list(d.tags), "runner": d.spec.runner,
                 "model": d.spec.model, "permission": d.spec.permission, "source": d.source,
                 "visibility": d.visibility}
                for d in defs
            ],
            "problems": [str(p) for p in cat.problems],
        }  # fmt: skip
        console.print_json(json.dumps(data))
        return
    table = Table(title=f"Task agents ({len(defs)})", title_justify="left")
    for col in ("name", "runner", "model", "permission", "tags", "source"):
        table.add_column(col, overflow="fold")
    home = str(Path.home())
    for d in defs:
        table.add_row(
            d.name, d.spec.runner, d.spec.model or "-", d.spec.permission, ", ".join(d.tags),
            d.source.replace(home, "~"),
        )  # fmt: skip
    console.print(table)
    for p in cat.problems:
        console.print(f"[red]definition error[/red] {p}")
