"""`agent-fleet trust`: a person trusts catalog files (direnv's ``allow``), lists and revokes that trust.

``trust FILE...`` records the sha256 of each file's current bytes (trust.py). ``trust --all`` trusts every
untrusted definition on the catalog search path EXCEPT files an agent turn recorded as written (turns record the
files their tools wrote): those must be named one by one, after reading them. Writes a turn made without recording
them (a shell command) cannot be told apart: ``--all`` says so, and prints what it trusted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import click

from agent_fleet_mcp import trust
from agent_fleet_mcp.catalog import (
    builtin_agents_dir,
    catalog_dirs,
    fleet_home,
    is_claude_code_dir,
    load_catalog,
    parse_definition,
    trust_command,
)
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import DefinitionError, InvalidRequest
from agent_fleet_mcp.reader_reports import open_reader


async def written_by_turns(settings: Settings) -> dict[str, str]:
    """file key -> "agent NAME turn N" for every file an agent turn recorded as written (deleted agents too)."""
    out: dict[str, str] = {}
    async with open_reader(settings) as reader:
        if reader is None:
            return out
        for path, agent, n in await reader.written_files():
            out.setdefault(trust.file_key(path), f"agent {agent.name!r} turn {n}")
    return out


def _describe(path: Path) -> str:
    try:
        d = parse_definition(path, claude_code=is_claude_code_dir(path.parent))
    except DefinitionError as exc:
        return f"(it does not load yet: {exc.message})"
    what = f"defines {d.name!r}: runner {d.spec.runner}, {d.spec.permission}"
    if d.spec.command:
        what += f", runs {' '.join(d.spec.command)}"
    return what


def run_trust(
    files: Sequence[Path], *, trust_all: bool, list_only: bool, revoke: bool, project_dir: Path, env: Mapping[str, str]
) -> int:
    """The body of `agent-fleet trust`; returns the exit code."""
    home = fleet_home(project_dir, env)
    if list_only:
        return _list(home)
    if revoke:
        if not files:
            raise InvalidRequest("name the files to revoke: agent-fleet trust --revoke agents/x.md")
        gone = set(trust.revoke_files(home, files))
        for f in files:
            key = trust.file_key(f)
            click.echo(f"revoked {key}" if key in gone else f"{key} was not trusted")
        return 0
    if trust_all == bool(files):
        raise InvalidRequest(
            "name the definition files to trust (agent-fleet trust agents/x.md), or pass --all for every untrusted "
            "file that `agent-fleet agents` lists"
        )
    settings = Settings(home=home, project_dir=project_dir, env=dict(env))
    written = anyio.run(written_by_turns, settings)
    if files:
        return _trust_named(home, files, written, dirs=catalog_dirs(project_dir, env))
    return _trust_all(home, project_dir, env, written)


def _trust_named(home: Path, files: Sequence[Path], written: Mapping[str, str], *, dirs: Sequence[Path]) -> int:
    builtin = builtin_agents_dir().resolve()
    searched = {d.resolve() for d in dirs if d.is_dir()}
    for f in files:
        if not f.is_file():
            raise InvalidRequest(f"{f} is not a file; name a definition file (agent-fleet agents lists them)")
        if f.resolve().parent == builtin:
            raise InvalidRequest(f"{f} is a built-in definition: built-ins are always trusted")
    for entry, f in zip(trust.trust_files(home, files), files, strict=True):
        click.echo(f"trusted {entry.path} (sha256 {entry.sha256[:12]}…): {_describe(f)}")
        if entry.path in written:
            click.echo(f"  note: {written[entry.path]} wrote this file; you named it, so it is trusted as it is now")
        if f.resolve().parent not in searched:
            click.echo("  note: this folder is not on the catalog search path (see `agent-fleet agents`)")
    return 0


def _trust_all(home: Path, project_dir: Path, env: Mapping[str, str], written: Mapping[str, str]) -> int:
    untrusted = load_catalog(project_dir, env).untrusted
    if not untrusted:
        click.echo("every definition file on the search path is already trusted")
        return 0
    chosen = [Path(u.path) for u in untrusted if trust.file_key(Path(u.path)) not in written]
    skipped = [Path(u.path) for u in untrusted if trust.file_key(Path(u.path)) in written]
    if chosen:
        _trust_named(home, chosen, {}, dirs=catalog_dirs(project_dir, env))
    for path in skipped:
        click.echo(
            f"skipped {path}: {written[trust.file_key(path)]} wrote it. Read it, then trust it by name: "
            f"{trust_command(path)}",
            err=True,
        )
    if chosen:
        click.echo(
            "(--all trusts files by what they are now: check `git diff`/`git status` if agents ran shell commands)"
        )
    return 1 if skipped else 0


def _list(home: Path) -> int:
    entries = trust.load_trusted(home)
    if not entries:
        click.echo(f"no trusted definition files in {trust.trust_file(home)} (built-ins are always trusted)")
        return 0
    for key, e in sorted(entries.items()):
        try:
            state = "ok" if trust.digest(Path(key).read_bytes()) == e.sha256 else "CHANGED (not used)"
        except OSError:
            state = "missing"
        at = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.trusted_at)) if e.trusted_at else "-"
        click.echo(f"{e.sha256[:12]}  {at}  {state:<18}  {key}")
    return 0
