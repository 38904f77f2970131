"""The ``Store`` protocol seam: SqliteStore implements it, constraint violations come out as our errors, runs close
once, and nothing outside ``store/`` talks to SQLite."""

from __future__ import annotations

import ast
import inspect
import sqlite3
from pathlib import Path

import pytest

import agent_fleet_mcp
from agent_fleet_mcp.errors import AlreadyExists, Conflict
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store import protocol
from agent_fleet_mcp.store.models import RunSpec
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

SRC = Path(agent_fleet_mcp.__file__).parent
STORAGE_DRIVERS = frozenset(("sqlite3", "aiosqlite"))
RUNS = [RunSpec(run_id="a", template="t", input="x", depends_on=[], cwd="/")]


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) or (inspect.isfunction(member) and not name.startswith("_"))
    }


def test_sqlite_store_has_every_protocol_method_with_the_same_parameters() -> None:
    methods = _protocol_methods()
    assert {"claim_turn", "finish_turn", "insert_batch", "finish_run", "agent_totals"} <= methods.keys()
    for name, sig in methods.items():
        impl = getattr(SqliteStore, name, None)
        assert impl is not None, f"SqliteStore lacks Store.{name}"
        assert inspect.iscoroutinefunction(impl), f"SqliteStore.{name} must be async like Store.{name}"
        got = inspect.signature(impl).parameters
        for pname, param in sig.parameters.items():
            assert pname in got, f"SqliteStore.{name} lacks parameter {pname!r}"
            assert got[pname].kind == param.kind, f"SqliteStore.{name}({pname}) is {got[pname].kind}, not {param.kind}"
            assert got[pname].default == param.default, f"SqliteStore.{name}({pname}) has another default"
    store: Store = SqliteStore(Path("unused.db"))  # pyright checks the whole protocol here too
    assert isinstance(store, SqliteStore)


def test_the_protocol_speaks_no_sqlite() -> None:
    """A second store (PostgreSQL) must be able to implement it: no rowid, PRAGMA, sqlite3 types or file paths."""
    tree = ast.parse(Path(protocol.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    assert not names & {"sqlite3", "aiosqlite", "Row", "Connection", "Cursor", "Path", "rowid", "lastrowid"}
    assert "PRAGMA" not in Path(protocol.__file__).read_text()


def _driver_imports(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in STORAGE_DRIVERS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in STORAGE_DRIVERS:
            found.append(node.module)
    return found


def test_the_scan_finds_driver_imports() -> None:
    assert _driver_imports("import sqlite3") == ["sqlite3"]
    assert _driver_imports("def f():\n    from aiosqlite import Row\n") == ["aiosqlite"]
    assert _driver_imports("import sqlite3.dbapi2 as d") == ["sqlite3.dbapi2"]
    assert _driver_imports("import json  # sqlite3\n") == []


def test_nothing_outside_store_imports_a_sqlite_driver() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {mod}"
        for path in sorted(SRC.rglob("*.py"))
        if "store" not in path.relative_to(SRC).parts[:1]
        for mod in _driver_imports(path.read_text())
    ]
    assert offenders == [], "only store/ may use SQLite; go through the Store protocol: " + ", ".join(offenders)


async def test_a_taken_batch_key_is_our_error_and_inserts_nothing(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_batch("b_1", RUNS, idempotency_key="k", request_hash="h")
        with pytest.raises(AlreadyExists) as err:
            await store.insert_batch("b_2", RUNS, idempotency_key="k", request_hash="h")
        assert not isinstance(err.value, sqlite3.Error) and err.value.__cause__ is None
        assert (err.value.field, err.value.holder) == ("idempotency_key", "a batch")
        assert await store.get_batch("b_2") is None and await store.runs_of("b_2") == []
        with pytest.raises(AlreadyExists) as again:
            await store.insert_batch("b_1", RUNS)  # the same id, no key
        assert again.value.field == "id"
        found = await store.find_batch_by_key("k")
        assert found is not None and found.id == "b_1"


async def test_a_taken_agent_key_is_our_error(tmp_path: Path) -> None:
    spec = AgentSpec(runner="command", command=("true",))
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_agent(id="a1", name="one", spec=spec, spec_hash="h", cwd="/", idempotency_key="k")
        with pytest.raises(AlreadyExists) as err:
            await store.insert_agent(id="a2", name="two", spec=spec, spec_hash="h", cwd="/", idempotency_key="k")
        assert err.value.field == "idempotency_key" and not isinstance(err.value, sqlite3.Error)


async def test_any_other_constraint_failure_is_a_conflict(tmp_path: Path) -> None:
    spec = AgentSpec(runner="command", command=("true",))
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_agent(id="a1", name="one", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        row = {"agent_id": "a1", "n": 1, "status": "succeeded", "prompt": "p", "runner": "command", "queued_at": 1.0}
        await store.restore_turn(row)
        with pytest.raises(Conflict) as err:
            await store.restore_turn(row)  # the same turn number twice
        assert isinstance(err.value.__cause__, sqlite3.IntegrityError)
        assert "refused the change" in str(err.value) and "retry" in str(err.value)
        assert len(await store.turns_of("a1")) == 1  # rolled back, the store still usable


async def test_an_error_after_sqlite_rolled_back_by_itself_comes_out_as_it_is(tmp_path: Path) -> None:
    """Some errors (a full disk, an I/O error) end the transaction inside SQLite; the store's own ROLLBACK must not
    then replace the real error with "cannot rollback - no transaction is active"."""

    class DiskFull(Exception):
        pass

    def fails_after_sqlite_rolled_back(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO batches (id, created_at, status) VALUES ('b', 1.0, 'running')")
        db.execute("ROLLBACK")  # what SQLite does by itself on SQLITE_FULL
        raise DiskFull

    async with SqliteStore(tmp_path / "fleet.db") as store:
        with pytest.raises(DiskFull):
            await store._write(fails_after_sqlite_rolled_back)  # pyright: ignore[reportPrivateUsage]
        assert await store.get_batch("b") is None
        await store.insert_batch("b2", RUNS)  # the connection still takes transactions
        assert await store.get_batch("b2") is not None


async def test_a_run_starts_once_and_closes_once(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "fleet.db") as store:
        second = RunSpec(run_id="b", template="t", input="y", depends_on=["a"], cwd="/")
        await store.insert_batch("b_1", [*RUNS, second])
        assert await store.start_run("b_1", "a", agent_id="ag_1")
        assert not await store.start_run("b_1", "a", agent_id="ag_2")  # another server started it first
        assert await store.finish_run("b_1", "a", status="succeeded")
        assert not await store.finish_run("b_1", "a", status="failed", reason="late")  # first closer wins
        assert await store.finish_run("b_1", "b", status="failed", reason="dependency 'a' failed")  # never started
        a, b = await store.runs_of("b_1")
        assert (a.status, a.agent_id, a.reason) == ("succeeded", "ag_1", None)
        assert a.started_at is not None and a.ended_at is not None and a.ended_at >= a.started_at
        assert (b.status, b.agent_id, b.started_at, b.reason) == ("failed", None, None, "dependency 'a' failed")
        assert not await store.start_run("b_1", "b", agent_id="ag_3")  # a closed run does not start


async def test_agent_totals_are_typed_and_sum_the_turns(tmp_path: Path) -> None:
    from agent_fleet_mcp.store.models import AgentTotals, TurnStatsUpdate

    spec = AgentSpec(runner="command", command=("true",))
    async with SqliteStore(tmp_path / "fleet.db") as store:
        await store.insert_agent(id="a1", name="one", spec=spec, spec_hash="h", cwd="/", idempotency_key=None)
        for cost in (0.5, None):
            t = await store.insert_turn(agent_id="a1", prompt="p", runner="command", model=None)
            await store.update_turn_stats(
                "a1", t.n, TurnStatsUpdate(input_tokens=10, output_tokens=5, cost_usd=cost, reads=["f"])
            )
        totals = await store.agent_totals(["a1", "nobody"])
        assert list(totals) == ["a1"]
        tot = totals["a1"]
        assert isinstance(tot, AgentTotals)
        assert (tot.turns, tot.queued, tot.tokens, tot.cost_usd, tot.unpriced) == (2, 2, 30, 0.5, 1)
        turn = await store.get_turn("a1", 1)
        assert turn is not None and turn.reads == ["f"] and turn.input_tokens == 10
        usage = await store.turn_usage()
        assert [(u["agent"], u["n"], u["cost_usd"]) for u in usage] == [("one", 1, 0.5), ("one", 2, None)]
