"""Group commit in the SQLite store: writes asked for while another is in the connection's thread go together in
the next trip and transaction, each whole or not at all on its own (sqlite_base.py, ``_write``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_fleet_mcp.errors import AlreadyExists
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

SPEC = AgentSpec(runner="command", command=("true",))


def gate_body(gate: threading.Event, entered: threading.Event) -> Callable[[sqlite3.Connection], str]:
    """A write that holds the connection's thread until ``gate`` is set (it marks itself done in the table)."""

    def body(db: sqlite3.Connection) -> str:
        entered.set()
        gate.wait(timeout=60)
        db.execute("INSERT INTO migrations (name, applied_at) VALUES ('gate', 0)")
        return "gate"

    return body


async def until(check: Callable[[], bool]) -> None:
    """Wait for a state of this process (never for a wall-clock time; the bound only ends a broken test)."""
    with anyio.fail_after(30):
        while not check():
            await anyio.sleep(0.001)


async def insert(store: SqliteStore, name: str) -> Any:
    return await store.insert_agent(id=name, name=name, spec=SPEC, spec_hash="h", cwd="/", idempotency_key=None)


def commits(store: SqliteStore) -> int:
    return store._commits  # pyright: ignore[reportPrivateUsage]


def queued(store: SqliteStore) -> int:
    return len(store._queued)  # pyright: ignore[reportPrivateUsage]


async def test_writes_asked_for_together_share_one_trip_and_one_transaction(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()
    async with SqliteStore(tmp_path / "fleet.db") as store:
        before = commits(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]
            await until(entered.is_set)
            for i in range(20):
                tg.start_soon(insert, store, f"a{i}")
            await until(lambda: queued(store) == 20)
            gate.set()
        assert commits(store) == before + 2  # the gate's, then the twenty together (one each before)
        assert {a.name for a in await store.list_agents()} == {f"a{i}" for i in range(20)}


async def test_a_write_that_raises_in_a_group_leaves_the_others(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    async def try_insert(store: SqliteStore, name: str, key: str) -> None:
        try:
            results[key] = (await insert(store, name)).name
        except AlreadyExists as exc:
            results[key] = exc

    def half(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO migrations (name, applied_at) VALUES ('half', 0)")
        raise ValueError("a write that changed a row, then raised")

    async def half_then_raise(store: SqliteStore) -> None:
        try:
            await store._write(half)  # pyright: ignore[reportPrivateUsage]
        except ValueError as exc:
            results["half"] = exc

    async with SqliteStore(tmp_path / "fleet.db") as store:
        await insert(store, "taken")
        before = commits(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]
            await until(entered.is_set)
            for key, name in (("1", "b1"), ("2", "b2"), ("3", "taken"), ("4", "b4")):
                tg.start_soon(try_insert, store, name, key)
            await until(lambda: queued(store) == 4)
            tg.start_soon(half_then_raise, store)
            await until(lambda: queued(store) == 5)
            tg.start_soon(try_insert, store, "b5", "5")
            await until(lambda: queued(store) == 6)
            gate.set()
        assert commits(store) == before + 2  # the gate's, then the six together
        assert isinstance(results.pop("half"), ValueError)
        assert not await store._all("SELECT 1 FROM migrations WHERE name = 'half'")  # pyright: ignore[reportPrivateUsage]
        assert isinstance(results.pop("3"), AlreadyExists)
        assert sorted(str(v) for v in results.values()) == ["b1", "b2", "b4", "b5"]
        assert {a.name for a in await store.list_agents()} == {"taken", "b1", "b2", "b4", "b5"}


async def test_writes_in_a_transaction_sqlite_rolled_back_fail_with_it(tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself on some errors (a full disk, I/O): the writes done in it before
    are lost, so their callers get the error too; the writes after it go on in a new transaction."""
    gate, entered = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def full_disk(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK")  # what SQLite does itself before it reports SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    async def run(key: str, call: Callable[[], Any]) -> None:
        try:
            outcome[key] = await call()
        except sqlite3.OperationalError as exc:
            outcome[key] = exc

    async with SqliteStore(tmp_path / "fleet.db") as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]
            await until(entered.is_set)
            tg.start_soon(run, "before", lambda: insert(store, "before"))
            await until(lambda: queued(store) == 1)
            tg.start_soon(run, "full", lambda: store._write(full_disk))  # pyright: ignore[reportPrivateUsage]
            await until(lambda: queued(store) == 2)
            tg.start_soon(run, "after", lambda: insert(store, "after"))
            await until(lambda: queued(store) == 3)
            gate.set()
        assert isinstance(outcome["full"], sqlite3.OperationalError)
        assert isinstance(outcome["before"], sqlite3.OperationalError)  # lost with the transaction: not stored
        assert getattr(outcome["after"], "name", None) == "after"
        assert {a.name for a in await store.list_agents()} == {"after"}


async def test_a_write_cancelled_before_a_trip_took_it_never_runs(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()
    async with SqliteStore(tmp_path / "fleet.db") as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]
            await until(entered.is_set)
            scope = anyio.CancelScope()

            async def cancelled() -> None:
                with scope:
                    await insert(store, "dropped")

            tg.start_soon(insert, store, "kept")
            tg.start_soon(cancelled)
            await until(lambda: queued(store) == 2)
            scope.cancel()
            await until(lambda: queued(store) == 1)
            gate.set()
        assert {a.name for a in await store.list_agents()} == {"kept"}


async def test_a_write_whose_caller_is_cancelled_in_its_trip_still_lands_and_the_queue_goes_on(
    tmp_path: Path,
) -> None:
    """The caller that runs a trip is cancelled while the connection's thread has it: that trip's writes land
    whole, and the writes queued meanwhile are taken by the next caller, none left waiting."""
    gate, entered = threading.Event(), threading.Event()
    async with SqliteStore(tmp_path / "fleet.db") as store:
        async with anyio.create_task_group() as tg:
            runner = anyio.CancelScope()

            async def run_gate() -> None:
                with runner:
                    await store._write(gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]

            tg.start_soon(run_gate)
            await until(entered.is_set)
            tg.start_soon(insert, store, "queued")
            await until(lambda: queued(store) == 1)
            runner.cancel()
            await until(lambda: queued(store) == 0)  # taken by its own caller, once the cancelled one let go
            gate.set()
        assert [a.name for a in await store.list_agents()] == ["queued"]
        rows = await store._all("SELECT name FROM migrations WHERE name = 'gate'")  # pyright: ignore[reportPrivateUsage]
        assert len(rows) == 1  # the cancelled caller's write landed


async def test_writes_queued_when_the_store_closes_fail_and_none_waits_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, entered = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def write(store: SqliteStore, name: str) -> None:
        try:
            await insert(store, name)
        except ValueError as exc:
            failed.append(exc)

    async with SqliteStore(tmp_path / "fleet.db") as store:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store._write, gate_body(gate, entered))  # pyright: ignore[reportPrivateUsage]
            await until(entered.is_set)
            tg.start_soon(write, store, "c1")
            tg.start_soon(write, store, "c2")
            await until(lambda: queued(store) == 2)

            async def closed(*_: object) -> None:
                raise ValueError("Connection closed")  # what aiosqlite raises once its connection is closed

            monkeypatch.setattr(store.db, "_execute", closed)
            gate.set()
            await until(lambda: len(failed) == 2)
            monkeypatch.undo()
        assert [str(e) for e in failed] == ["Connection closed", "Connection closed"]
        assert [a.name for a in await store.list_agents()] == []
