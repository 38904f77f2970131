"""The SQLite store: migrations from blank, atomic claims under the cap, several processes on one home."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.migrations import MIGRATIONS
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_migrates_from_blank_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as store:
        assert await store.applied_migrations() == [name for name, _ in MIGRATIONS]
        cur = await store.db.execute("PRAGMA journal_mode")
        assert (await cur.fetchone())[0] == "wal"
        await cur.close()
    async with SqliteStore(db) as store:
        assert await store.migrate() == []  # nothing pending on reopen


async def test_claim_respects_cap_and_one_running_turn_per_agent(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        agents = [
            await store.insert_agent(id=f"a{i}", name=f"n{i}", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
            for i in range(3)
        ]
        t0 = await store.insert_turn(agent_id="a0", prompt="p", runner="command", model=None)
        t0b = await store.insert_turn(agent_id="a0", prompt="p2", runner="command", model=None)
        t1 = await store.insert_turn(agent_id="a1", prompt="p", runner="command", model=None)
        t2 = await store.insert_turn(agent_id="a2", prompt="p", runner="command", model=None)
        assert (t0.n, t0b.n) == (1, 2)
        assert await store.claim_turn("a0", 1, max_running=2)
        assert not await store.claim_turn("a0", 2, max_running=2)  # agent already has a running turn
        assert await store.claim_turn("a1", t1.n, max_running=2)
        assert not await store.claim_turn("a2", t2.n, max_running=2)  # cap reached
        assert (await store.get_agent("a0")).status == "running"
        assert await store.finish_turn("a0", 1, status="succeeded", agent_status="idle")
        assert not await store.finish_turn("a0", 1, status="failed")  # first closer wins
        assert await store.claim_turn("a2", t2.n, max_running=2)
        assert len(agents) == 3


async def test_two_processes_share_one_home(tmp_path: Path) -> None:
    """Another process inserts agents and claims turns concurrently with us; nothing is lost or corrupted."""
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as store:
        pass
    script = textwrap.dedent(
        f"""
        import anyio
        from agent_fleet_mcp.spec import AgentSpec
        from agent_fleet_mcp.store.sqlite import SqliteStore

        async def main():
            async with SqliteStore(__import__("pathlib").Path({str(db)!r})) as s:
                for i in range(40):
                    await s.insert_agent(id=f"x{{i}}", name=f"x{{i}}", spec=AgentSpec(), spec_hash="h", cwd="/",
                                         idempotency_key=None)
                    t = await s.insert_turn(agent_id=f"x{{i}}", prompt="p", runner="anthropic", model=None)
                    await s.claim_turn(f"x{{i}}", t.n, max_running=30)
        anyio.run(main)
        """
    )
    other = subprocess.Popen([sys.executable, "-c", script])
    async with SqliteStore(db) as store:
        for i in range(40):
            await store.insert_agent(id=f"y{i}", name=f"y{i}", spec=AgentSpec(), spec_hash="h", cwd="/",
                                     idempotency_key=None)  # fmt: skip
            t = await store.insert_turn(agent_id=f"y{i}", prompt="p", runner="anthropic", model=None)
            await store.claim_turn(f"y{i}", t.n, max_running=30)
        assert other.wait(timeout=60) == 0
        agents = await store.list_agents()
        assert len(agents) == 80
        running = await store.turns_with_status("running")
        assert len(running) == 30  # the fleet-wide cap held across both processes
        cur = await store.db.execute("PRAGMA integrity_check")
        assert (await cur.fetchone())[0] == "ok"
        await cur.close()


async def test_upgrades_from_the_oldest_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the first release (only 0001) keeps its data and gains the later migrations."""
    import agent_fleet_mcp.store.sqlite as sqlite_mod

    db = tmp_path / "fleet.db"
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", MIGRATIONS[:1])
    async with SqliteStore(db) as old:
        assert await old.applied_migrations() == ["0001_initial"]
        await old.insert_agent(id="a1", name="keep", spec=AgentSpec(), spec_hash="h", cwd="/", idempotency_key=None)
        await old.db.execute("INSERT INTO batches (id, created_at, status) VALUES ('b_old', 1.0, 'succeeded')")
    monkeypatch.undo()
    async with SqliteStore(db) as new:
        assert await new.applied_migrations() == [name for name, _ in MIGRATIONS]
        assert (await new.get_agent("keep")) is not None
        old_batch = await new.get_batch("b_old")
        assert old_batch is not None and old_batch.status == "succeeded" and old_batch.idempotency_key is None
