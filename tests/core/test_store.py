"""The SQLite store: migrations from blank, atomic claims under the cap, several processes on one home."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_fleet_mcp.errors import AlreadyExists, LimitReached
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.migrations import MIGRATIONS
from agent_fleet_mcp.store.models import FleetTotals, TurnStatsUpdate
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_migrates_from_blank_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as store:
        assert await store.applied_migrations() == [name for name, _ in MIGRATIONS]
        cur = await store.db.execute("PRAGMA journal_mode")
        row = await cur.fetchone()
        assert row is not None and row[0] == "wal"
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
        a0 = await store.get_agent("a0")
        assert a0 is not None and a0.status == "running"
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
        row = await cur.fetchone()
        assert row is not None and row[0] == "ok"
        await cur.close()


async def test_upgrades_from_the_oldest_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the first release (only 0001) keeps its data and gains the later migrations."""
    import agent_fleet_mcp.store.sqlite_base as sqlite_mod

    db = tmp_path / "fleet.db"
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", MIGRATIONS[:1])
    async with SqliteStore(db) as old:
        assert await old.applied_migrations() == ["0001_initial"]
        # as the first release wrote them (its columns only); two live agents share a key (the old race)
        for aid, name, key, t in (("a1", "keep", None, 1.0), ("a2", "dup1", "k", 2.0), ("a3", "dup2", "k", 3.0)):
            await old.db.execute(
                "INSERT INTO agents (id, name, status, spec_json, spec_hash, cwd, idempotency_key, created_at,"
                " updated_at) VALUES (?, ?, 'idle', ?, 'h', '/', ?, ?, ?)",
                (aid, name, AgentSpec().model_dump_json(), key, t, t),
            )
        await old.db.execute("INSERT INTO batches (id, created_at, status) VALUES ('b_old', 1.0, 'succeeded')")
    monkeypatch.undo()
    async with SqliteStore(db) as new:
        assert await new.applied_migrations() == [name for name, _ in MIGRATIONS]
        keep = await new.get_agent("keep")
        assert keep is not None and keep.root_id == "a1" and keep.depth == 1 and keep.parent_id is None
        # 0003: both agents survive, only the oldest keeps the key, and the key is unique from now on
        assert [a.name for a in await new.list_agents()] == ["keep", "dup1", "dup2"]
        found = await new.find_by_idempotency_key("k")
        assert found is not None and found.name == "dup1"
        with pytest.raises(AlreadyExists):
            await new.insert_agent(id="a4", name="dup3", spec=AgentSpec(), spec_hash="h", cwd="/", idempotency_key="k")
        old_batch = await new.get_batch("b_old")
        assert old_batch is not None and old_batch.status == "succeeded" and old_batch.idempotency_key is None


async def test_one_live_agent_per_key_and_name_is_a_constraint(tmp_path: Path) -> None:
    """The database itself refuses a second live agent with the same idempotency key or name (any process), maps
    the violation to AlreadyExists, and frees both once the holder is deleted."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec()
        await store.insert_agent(id="a1", name="n1", spec=spec, spec_hash="h", cwd="/", idempotency_key="k")
        with pytest.raises(AlreadyExists) as by_key:
            await store.insert_agent(id="a2", name="n2", spec=spec, spec_hash="h", cwd="/", idempotency_key="k")
        assert by_key.value.field == "idempotency_key"
        with pytest.raises(AlreadyExists) as by_name:
            await store.insert_agent(id="a3", name="n1", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        assert by_name.value.field == "name"
        assert [a.id for a in await store.list_agents()] == ["a1"]
        await store.mark_deleted("a1")
        again = await store.insert_agent(id="a4", name="n1", spec=spec, spec_hash="h", cwd="/", idempotency_key="k")
        assert again.id == "a4"


async def test_tree_size_is_bounded_atomically(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec()
        root = await store.insert_agent(id="r", name="r", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        assert root.root_id == "r" and root.depth == 1
        for i in range(2):
            await store.insert_agent(id=f"c{i}", name=f"c{i}", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                     parent_id="r", root_id="r", depth=2, max_tree_agents=3)  # fmt: skip
        with pytest.raises(LimitReached, match="already has 3 agents"):
            await store.insert_agent(id="c9", name="c9", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                     parent_id="r", root_id="r", depth=2, max_tree_agents=3)  # fmt: skip
        await store.mark_deleted("c0")  # deleting does not give the tree its quota back
        with pytest.raises(LimitReached):
            await store.insert_agent(id="c8", name="c8", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                     parent_id="r", root_id="r", depth=2, max_tree_agents=3)  # fmt: skip


async def test_descendants_of_a_running_turn_start_beyond_the_cap(tmp_path: Path) -> None:
    """Cap 1: the parent's turn holds the only slot; its child's turn still starts (the parent waits on it), an
    unrelated agent's turn does not."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        await store.insert_agent(id="p", name="p", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        await store.insert_agent(id="c", name="c", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                 parent_id="p", root_id="p", depth=2)  # fmt: skip
        await store.insert_agent(id="g", name="g", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                 parent_id="c", root_id="p", depth=3)  # fmt: skip
        await store.insert_agent(id="o", name="o", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        for aid in ("p", "c", "g", "o"):
            await store.insert_turn(agent_id=aid, prompt="x", runner="command", model=None)
        assert await store.claim_turn("p", 1, max_running=1)
        assert not await store.claim_turn("o", 1, max_running=1)
        assert await store.claim_turn("c", 1, max_running=1)
        assert await store.claim_turn("g", 1, max_running=1)  # grandparent and parent both running
        await store.finish_turn("p", 1, status="succeeded")
        await store.finish_turn("c", 1, status="succeeded")
        assert not await store.claim_turn("o", 1, max_running=1)  # g still holds... its own slot under the cap
        await store.finish_turn("g", 1, status="succeeded")
        assert await store.claim_turn("o", 1, max_running=1)


async def test_queued_status_never_overwrites_a_concurrent_claim(tmp_path: Path) -> None:
    """command_agent marks the agent queued after inserting the turn; a dispatcher that claimed the turn in between
    set it running, and that must stay (an agent shown 'queued' while its turn runs was the race)."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        await store.insert_agent(id="a0", name="n0", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        await store.insert_turn(agent_id="a0", prompt="p", runner="command", model=None)
        assert await store.claim_turn("a0", 1, max_running=2)  # the other task's claim came first
        await store.mark_queued_unless_running("a0")
        agent = await store.get_agent("a0")
        assert agent is not None and agent.status == "running"
        await store.finish_turn("a0", 1, status="succeeded", agent_status="idle")
        await store.insert_turn(agent_id="a0", prompt="p2", runner="command", model=None)
        await store.mark_queued_unless_running("a0")
        agent = await store.get_agent("a0")
        assert agent is not None and agent.status == "queued"


async def test_a_spawned_process_is_recorded_only_on_a_turn_still_running(tmp_path: Path) -> None:
    """A turn closed while its process was being spawned keeps no pid (its spawner is told, and stops the process);
    a running one records it."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        for aid in ("a0", "a1"):
            await store.insert_agent(id=aid, name=aid, spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
            await store.insert_turn(agent_id=aid, prompt="p", runner="command", model=None)
            assert await store.claim_turn(aid, 1, max_running=5)
        await store.finish_turn("a1", 1, status="cancelled", reason="agent deleted")  # the delete came first
        assert await store.set_turn_process("a0", 1, pid=4242, proc_start=1.0, out_path="/x", model="m")
        assert not await store.set_turn_process("a1", 1, pid=4343, proc_start=1.0, out_path="/y", model="m")
        running, closed = await store.get_turn("a0", 1), await store.get_turn("a1", 1)
        assert running is not None and (running.status, running.pid, running.model) == ("running", 4242, "m")
        assert closed is not None and (closed.status, closed.pid) == ("cancelled", None)


async def test_claim_queued_claims_oldest_first_one_per_agent_under_the_cap(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        for i in range(4):
            await store.insert_agent(id=f"a{i}", name=f"n{i}", spec=AgentSpec(), spec_hash="h", cwd="/",
                                     idempotency_key=None)  # fmt: skip
        for agent in ("a2", "a0", "a0", "a1", "a3"):
            await store.insert_turn(agent_id=agent, prompt="p", runner="command", model=None)
        got = await store.claim_queued(max_running=2, claimer="me")
        assert [(t.agent_id, t.n, t.status, t.claimed_by) for t in got] == [
            ("a2", 1, "running", "me"), ("a0", 1, "running", "me")
        ]  # fmt: skip
        assert await store.claim_queued(max_running=2) == []  # the cap is full
        assert await store.finish_turn("a0", 1, status="succeeded", agent_status="idle")
        got = await store.claim_queued(max_running=3, limit=1)
        assert [(t.agent_id, t.n) for t in got] == [("a0", 2)]  # the agent's next turn, and at most `limit`
        await store.mark_deleted("a1")
        got = await store.claim_queued(max_running=10)
        assert [(t.agent_id, t.n) for t in got] == [("a3", 1)]
        a1 = await store.get_turn("a1", 1)
        assert a1 is not None and (a1.status, a1.reason) == ("cancelled", "agent deleted")
        assert len(await store.turns_with_status("running")) == 3


async def test_claim_queued_lets_a_child_of_a_running_agent_past_a_full_cap(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_agent(id="p", name="p", spec=AgentSpec(), spec_hash="h", cwd="/", idempotency_key=None)
        await store.insert_agent(id="o", name="o", spec=AgentSpec(), spec_hash="h", cwd="/", idempotency_key=None)
        await store.insert_agent(id="c", name="c", spec=AgentSpec(), spec_hash="h", cwd="/", idempotency_key=None,
                                 parent_id="p", root_id="p", depth=2)  # fmt: skip
        await store.insert_turn(agent_id="p", prompt="p", runner="command", model=None)
        assert [t.agent_id for t in await store.claim_queued(max_running=1)] == ["p"]
        await store.insert_turn(agent_id="o", prompt="p", runner="command", model=None)
        await store.insert_turn(agent_id="c", prompt="p", runner="command", model=None)
        assert [t.agent_id for t in await store.claim_queued(max_running=1)] == ["c"]  # "o" waits for a slot


async def test_two_processes_claim_queued_turns_exactly_once_under_the_cap(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as store:
        for i in range(60):
            await store.insert_agent(id=f"z{i}", name=f"z{i}", spec=AgentSpec(), spec_hash="h", cwd="/",
                                     idempotency_key=None)  # fmt: skip
            await store.insert_turn(agent_id=f"z{i}", prompt="p", runner="command", model=None)
    script = textwrap.dedent(
        f"""
        import anyio, json
        from agent_fleet_mcp.store.sqlite import SqliteStore

        async def main():
            got = []
            async with SqliteStore(__import__("pathlib").Path({str(db)!r})) as s:
                for _ in range(30):
                    got += [t.agent_id for t in await s.claim_queued(max_running=25, limit=2)]
            print(json.dumps(got))
        anyio.run(main)
        """
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    mine: list[str] = []
    async with SqliteStore(db) as store:
        for _ in range(30):
            mine += [t.agent_id for t in await store.claim_queued(max_running=25, limit=2)]
        out, _ = await anyio.to_thread.run_sync(other.communicate)
        theirs: list[str] = json.loads(out)
        running = await store.turns_with_status("running")
    assert len(mine) + len(theirs) == 25 == len(running)
    assert not set(mine) & set(theirs)


async def test_fleet_totals_follow_every_write_of_any_connection(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as mine, SqliteStore(db) as other:
        assert await mine.fleet_totals() == FleetTotals()
        for store, agent in ((mine, "a"), (other, "b"), (other, "c")):
            await store.insert_agent(id=agent, name=agent, spec=AgentSpec(), spec_hash="h", cwd="/",
                                     idempotency_key=None)  # fmt: skip
            t = await store.insert_turn(agent_id=agent, prompt="p", runner="command", model=None)
            await store.update_turn_stats(agent, t.n, TurnStatsUpdate(input_tokens=10, output_tokens=5, cost_usd=0.5))
        await other.update_turn_stats("c", 1, TurnStatsUpdate(input_tokens=1))  # used tokens, no price
        await other.insert_turn(agent_id="c", prompt="p", runner="command", model=None)
        got = await mine.fleet_totals()
        assert (got.agents, got.queued, got.input_tokens, got.output_tokens) == (3, 4, 21, 10)
        assert got.cost_usd == 1.0  # c has an unpriced turn: its cost is unknown, as its status row shows
        await mine.set_agent_status("b", "failed", last_error="x")  # a write on this connection
        assert (await mine.fleet_totals()).failed == 1
        await other.mark_deleted("a")  # and on the other one
        got = await mine.fleet_totals()
        assert (got.agents, got.failed, got.cost_usd) == (2, 1, 0.5)


async def test_the_ticks_narrow_reads_of_running_turns(tmp_path: Path) -> None:
    """What a supervisor tick reads instead of every running turn's row (and its agent's): each running turn's pid
    (None while its claimer is spawning it), and the budgeted batches that have a running turn."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        await store.insert_batch("b_budget", [], budget_usd=1.0)
        await store.insert_batch("b_free", [])
        await store.insert_batch("b_idle", [], budget_usd=1.0)  # its agent has no running turn
        for aid, batch in (("a0", "b_budget"), ("a1", "b_free"), ("a2", None), ("a3", "b_idle"), ("a4", "b_budget")):
            await store.insert_agent(id=aid, name=aid, spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                     batch_id=batch)  # fmt: skip
            await store.insert_turn(agent_id=aid, prompt="p", runner="command", model=None)
        for aid in ("a0", "a1", "a2", "a4"):
            assert await store.claim_turn(aid, 1, max_running=10)
        await store.set_turn_process("a0", 1, pid=4242, proc_start=1.0, out_path="/x", model=None)
        await store.set_turn_process("a4", 1, pid=4343, proc_start=1.0, out_path="/y", model=None)
        await store.finish_turn("a4", 1, status="succeeded", agent_status="idle")
        pids = await store.running_turn_pids()
        assert pids == [(t.agent_id, t.n, t.pid) for t in await store.turns_with_status("running")]
        assert sorted(pids) == [("a0", 1, 4242), ("a1", 1, None), ("a2", 1, None)]
        assert await store.budgeted_batches_running() == ["b_budget"]
        await store.finish_turn("a0", 1, status="succeeded", agent_status="idle")
        assert await store.budgeted_batches_running() == []


async def test_a_turns_end_and_its_last_usage_are_one_write(tmp_path: Path) -> None:
    """``finish_turn(stats=...)`` writes the usage and closes the turn in one transaction (a turn's end was two
    trips to the store's thread); a later closer loses the close but still records the usage it was given."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        await store.insert_agent(id="a0", name="a0", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        await store.insert_turn(agent_id="a0", prompt="p", runner="command", model=None)
        assert await store.claim_turn("a0", 1, max_running=10)
        commits = store._commits  # pyright: ignore[reportPrivateUsage]
        usage = TurnStatsUpdate(input_tokens=7, output_tokens=3, cost_usd=0.25, reads=["a.py"], model="m")
        assert await store.finish_turn("a0", 1, status="succeeded", agent_status="idle", stats=usage)
        assert store._commits == commits + 1  # pyright: ignore[reportPrivateUsage]
        turn = await store.get_turn("a0", 1)
        assert turn is not None and turn.status == "succeeded"
        assert (turn.input_tokens, turn.output_tokens, turn.cost_usd, turn.reads) == (7, 3, 0.25, ["a.py"])
        later = TurnStatsUpdate(input_tokens=8, output_tokens=3, cost_usd=0.5)
        assert not await store.finish_turn("a0", 1, status="failed", stats=later)
        turn = await store.get_turn("a0", 1)
        assert turn is not None and (turn.status, turn.cost_usd) == ("succeeded", 0.5)


def trips_to_the_connections_thread(store: SqliteStore) -> list[str]:
    """What the store runs on its connection's thread from now on (aiosqlite's one-trip call, spied on)."""
    trips: list[str] = []
    db: Any = store.db
    real = db._execute

    async def execute(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", "?"))
        return await real(fn, *args, **kwargs)

    db._execute = execute
    return trips


async def test_a_dispatch_with_nothing_queued_makes_no_trip_to_the_connections_thread(tmp_path: Path) -> None:
    """A dispatch follows every turn's end and every tick; with nothing queued a point read (on the caller's
    thread) says so. It was a read on the connection's thread each time: ~60 trips in a wave of 20 turns."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        await store.insert_agent(id="a0", name="a0", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        trips = trips_to_the_connections_thread(store)
        assert await store.claim_queued(max_running=5) == []
        assert trips == []
        await store.insert_turn(agent_id="a0", prompt="p", runner="command", model=None)
        trips.clear()
        (claimed,) = await store.claim_queued(max_running=5)
        assert (claimed.agent_id, claimed.n, claimed.status) == ("a0", 1, "running")
        assert trips  # a queued turn: the candidates' read and the claim go to the connection's thread as before


async def test_a_dispatch_against_a_full_cap_makes_no_trip_to_the_connections_thread(tmp_path: Path) -> None:
    """With the cap full only a turn under a running ancestor (or of a deleted agent) can be claimed. The
    candidates' read went to the connection's thread all the same, once per tick and per queued turn's dispatch
    (~2 ms each with 440 queued, half of a create_agent); point reads now say there is none."""
    async with SqliteStore(tmp_path / "fleet.db") as store:
        spec = AgentSpec(runner="command", command=("true",))
        for i in range(4):
            await store.insert_agent(id=f"a{i}", name=f"a{i}", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
            await store.insert_turn(agent_id=f"a{i}", prompt="p", runner="command", model=None)
        assert [t.agent_id for t in await store.claim_queued(max_running=1)] == ["a0"]
        assert await store.count_running() == 1
        trips = trips_to_the_connections_thread(store)
        assert await store.claim_queued(max_running=1) == []
        assert trips == []
        await store.insert_agent(id="c", name="c", spec=spec, spec_hash="h", cwd="/", idempotency_key=None,
                                 parent_id="a0", root_id="a0", depth=2)  # fmt: skip
        await store.insert_turn(agent_id="c", prompt="p", runner="command", model=None)
        trips.clear()
        assert [t.agent_id for t in await store.claim_queued(max_running=1)] == ["c"]  # under a running ancestor
        assert trips
        assert [t.agent_id for t in await store.claim_queued(max_running=3)] == ["a1"]  # a free slot: as before

