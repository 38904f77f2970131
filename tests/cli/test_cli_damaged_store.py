"""A damaged fleet.db (not SQLite, truncated, garbage in the middle): the CLI and the server exit (they used to print
a traceback and hang forever) naming the file and the next step; `doctor` says so; `doctor --repair` keeps the file
aside and rebuilds the fleet from the turn files, a still-running turn included. Real processes throughout."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files
from agent_fleet_mcp.waits import wait_for

from .conftest import TEST_AGENTS, cli_argv, subprocess_env

EXIT_BOUND_S = 60.0  # generous: the point is that they exit at all (they hung forever), not how fast
SERVER = str(Path(sys.executable).parent / "agent-fleet-mcp")


@dataclass(frozen=True)
class Original:
    home: Path
    env: dict[str, str]
    turns: dict[tuple[str, int], tuple[str, str | None]]  # (agent id, n) -> (status, result)
    names: dict[str, str]
    gate: Path


async def _populate(settings: Settings, gate: Path) -> Original:
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="echo-1", template="echo", prompt="hello fleet")
            await fleet.create_agent(name="failer-1", template="failer", prompt="disk full")
            assert (await wait_for(fleet, agents=["echo-1", "failer-1"], timeout_s=30)).done
            await fleet.command_agent("echo-1", "second turn")
            assert (await wait_for(fleet, agents=["echo-1"], timeout_s=30)).done
            await fleet.create_agent(name="held", template="gate", prompt=str(gate))  # still running at repair time
            while not [t for t in await store.turns_with_status("running") if t.pid is not None]:
                await anyio.sleep(0.05)
        agents = await store.list_agents()
        turns = {(t.agent_id, t.n): (t.status, t.result_text) for a in agents for t in await store.turns_of(a.id)}
        return Original(settings.home, dict(settings.env), turns, {a.id: a.name for a in agents}, gate)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Original]:
    base = tmp_path_factory.mktemp("damaged")
    (base / "project").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
    env.update(AGENT_FLEET_HOME=str(base / "home"), AGENT_FLEET_AGENTS=str(TEST_AGENTS))
    trust_files(base / "home", sorted(TEST_AGENTS.glob("*.md")))  # as a person does with `agent-fleet trust`
    settings = Settings(home=base / "home", max_concurrent=4, project_dir=base / "project", env=env,
                        poll_interval_s=0.05)  # fmt: skip
    got = anyio.run(_populate, settings, base / "gate-open")
    yield got
    got.gate.touch()  # let the held turn end


def damage(db: Path, kind: str) -> None:
    size = db.stat().st_size
    if kind == "not-sqlite":
        db.write_text("these are notes, not a database\n" * 200)
    elif kind == "truncated":
        os.truncate(db, size // 2)
    else:  # garbage in the middle, over pages in use (a free page's garbage harms nothing: VACUUM leaves none)
        con = sqlite3.connect(db)
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        size = db.stat().st_size
        with open(db, "r+b") as f:
            f.seek(size // 2 - 1000)
            f.write(b"\xab" * 3000)


@pytest.fixture(params=["not-sqlite", "truncated", "garbage-middle"])
def damaged(request: pytest.FixtureRequest, original: Original, tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    home = tmp_path / "home"
    shutil.copytree(original.home, home, ignore=shutil.ignore_patterns("*.sock", "forkserver.*"))
    damage(home / "fleet.db", request.param)
    return home, subprocess_env(home, original.env), request.param


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=EXIT_BOUND_S, stdin=subprocess.PIPE)


def test_cli_and_server_exit_naming_the_file_and_the_repair(damaged: tuple[Path, dict[str, str], str]) -> None:
    home, env, _kind = damaged
    db = str(home / "fleet.db")
    status = run(cli_argv("status"), env)
    assert status.returncode == 1 and db in status.stderr and "agent-fleet doctor --repair" in status.stderr
    assert "Traceback" not in status.stderr
    # the stdio server, its stdin kept open as a host would: it must not wait for MCP traffic
    server = subprocess.Popen([SERVER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = server.communicate(timeout=EXIT_BOUND_S)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 1 and out == b""  # stdout is the protocol: nothing printed there
    assert db in err.decode() and "agent-fleet doctor --repair" in err.decode()
    doctor = run(cli_argv("doctor", "--json"), env)
    assert doctor.returncode == 1
    store = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["store"]
    assert store["level"] == "fail" and "damaged" in store["detail"] and "--repair" in store["fix"]


def test_repair_keeps_the_file_aside_and_rebuilds_from_the_turn_files(
    damaged: tuple[Path, dict[str, str], str], original: Original
) -> None:
    home, env, kind = damaged
    before = (home / "fleet.db").read_bytes()
    repair = run(cli_argv("doctor", "--repair"), env)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    kept_files = [p for p in home.iterdir() if p.name.startswith("fleet.db.damaged-")]
    [kept] = [p for p in kept_files if p.name[-4:] not in ("-wal", "-shm")]
    assert kept.read_bytes() == before and str(kept) in repair.stdout
    assert "not recoverable" in repair.stdout and "queued turns" in repair.stdout

    async def rebuilt() -> tuple[dict[tuple[str, int], tuple[str, str | None]], dict[str, str]]:
        async with SqliteStore(home / "fleet.db") as store:
            agents = await store.list_agents()
            turns = {(t.agent_id, t.n): (t.status, t.result_text) for a in agents for t in await store.turns_of(a.id)}
            return turns, {a.id: a.name for a in agents}

    turns, names = anyio.run(rebuilt)
    assert turns == original.turns  # every turn, with its outcome and result, the running one still running
    assert set(names) == set(original.names)
    if kind == "not-sqlite":  # nothing readable: the names and specs are gone, and the output says so
        assert all(n == f"recovered-{i}" for i, n in names.items()) and "name, spec and cwd of 3" in repair.stdout
    status = run(cli_argv("status", "--json"), env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["fleet"]["running"] == 1
    again = run(cli_argv("doctor"), env)
    assert again.returncode == 0 and "integrity ok" in again.stdout
