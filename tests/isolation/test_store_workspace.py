"""The store keeps an isolated agent's worktree, its changes and when it was merged (migration 0006_worktrees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.migrations import MIGRATIONS
from agent_fleet_mcp.store.models import RunSpec
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.worktrees import Changes, Workspace

pytestmark = pytest.mark.anyio

WS = Workspace(repo="/r", path="/h/worktrees/a1", branch="fleet/w", base="b" * 40, rel="src/pkg")


async def test_workspace_changes_and_merged_at_round_trip(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(permission="readwrite", cwd="/r/src/pkg")
        a = await store.insert_agent(id="a1", name="w", spec=spec, spec_hash="h", cwd=WS.cwd, idempotency_key=None,
                                     workspace=WS)  # fmt: skip
        plain = await store.insert_agent(id="a2", name="p", spec=spec, spec_hash="h", cwd="/x", idempotency_key=None)
        assert a.workspace == WS and a.cwd == "/h/worktrees/a1/src/pkg" and a.origin_cwd == "/r/src/pkg"
        assert a.changes is None and a.merged_at is None
        assert plain.workspace is None and plain.origin_cwd == "/x"
        await store.set_changes("a1", Changes(added=12, removed=3, files=("a.py", "b.py")))
        await store.set_merged("a1", 123.5)
        got = await store.get_agent("w")
        assert got is not None and got.changes == Changes(12, 3, ("a.py", "b.py")) and got.merged_at == 123.5
        assert got.changes is not None and got.changes.summary() == "+12 -3, 2 files"
        await store.mark_deleted("a1")
        await store.set_changes("a1", Changes(1, 0, ("c.py",)))  # a deleted agent's last commit is recorded too
        isolated = await store.isolated_agents()
        assert [r.id for r in isolated] == ["a1"] and isolated[0].status == "deleted"
        assert isolated[0].changes == Changes(1, 0, ("c.py",))


async def test_a_run_keeps_the_isolation_it_asked_for(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_batch(
            "b1", [RunSpec("x", "t", "in", [], "/", isolation="none"), RunSpec("y", "t", "in", [], "/")]
        )
        assert [r.isolation for r in await store.runs_of("b1")] == ["none", None]


async def test_an_older_store_gains_the_columns_and_keeps_its_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent_fleet_mcp.store.sqlite_base as sqlite_mod

    db = tmp_path / "fleet.db"
    names = [n for n, _ in MIGRATIONS]
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", MIGRATIONS[: names.index("0006_worktrees")])
    async with SqliteStore(db) as old:
        await old.db.execute(
            "INSERT INTO agents (id, name, status, spec_json, spec_hash, cwd, created_at, updated_at)"
            " VALUES ('a1', 'old', 'idle', ?, 'h', '/', 1.0, 1.0)",
            (AgentSpec().model_dump_json(),),
        )
    monkeypatch.undo()
    async with SqliteStore(db) as new:
        assert (await new.applied_migrations())[-1] == "0006_worktrees"
        got = await new.get_agent("old")
        assert got is not None and got.workspace is None and got.changes is None and got.merged_at is None
