"""The SQLite store's connection: opening (WAL, busy timeout, the bounded integrity check), transactions and
migrations. The queries are in sqlite.py (agents and turns) and sqlite_batches.py (usage, batches and runs).

WAL mode and a busy timeout let several processes (two servers, the CLI) share one fleet home. One connection per
store; an anyio lock keeps one task's transaction from interleaving with another's on that connection. Claims that
must be atomic across processes are single conditional statements inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import anyio

from agent_fleet_mcp.errors import Conflict, StoreDamaged
from agent_fleet_mcp.private import private_dirs, touch_private
from agent_fleet_mcp.store.integrity import quick_check
from agent_fleet_mcp.store.migrations import MIGRATIONS
from agent_fleet_mcp.store.models import (
    FleetTotals,
)

BUSY_TIMEOUT_MS = 10_000
POINT_READ_BUSY_S = 0.05  # a point read on the event loop's thread waits this long for a lock, then goes the usual way
POINT_READ_MAX_IDS = 64  # reads of more ids than this go to the connection's thread (they may take a while)
OPEN_CHECK_S = 2.0  # the integrity check at open; a bigger database is checked as far as this allows


T = TypeVar("T")


def _damage_message(text: str) -> bool:
    return any(k in text for k in ("malformed", "not a database", "corrupt", "disk image"))


class SqliteConnection:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads on the event loop's thread (``_point``)
        self._lock = anyio.Lock()
        self._commits = 0  # this connection's write transactions (with ``PRAGMA data_version``: "did anything change")
        self._totals: tuple[tuple[int, int], FleetTotals] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open (creating it if needed) and migrate. A damaged file raises ``StoreDamaged`` (nothing left open)."""
        private_dirs(self.path.parent)
        await self.check_intact()
        touch_private(self.path)  # 0600 before SQLite opens it: its -wal and -shm files take its mode
        async with self._closing_on_damage():
            db = await aiosqlite.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            self._db = db
            db.row_factory = aiosqlite.Row
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await self.migrate()

    async def check_intact(self) -> None:
        """Refuse a damaged existing file up front (bounded ``quick_check``), naming it and the repair."""
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise StoreDamaged(str(self.path), "it is not a file")
        got = await anyio.to_thread.run_sync(lambda: quick_check(self.path, time_budget_s=OPEN_CHECK_S))
        if got.ok is False:
            raise StoreDamaged(str(self.path), "; ".join(got.problems)[:300])

    @asynccontextmanager
    async def _closing_on_damage(self) -> AsyncGenerator[None]:
        """Any "not a database" / "malformed" error while opening: close the connection (its thread would keep
        the process alive) and raise ``StoreDamaged``."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _damage_message(str(exc)):
                await self.close()
                raise
            await self.close()
            raise StoreDamaged(str(self.path), str(exc)) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def open_existing(self) -> bool:
        """Open an existing database for reading (the CLI): never creates the file, and refuses writes afterwards
        (``query_only``). Returns False when there is no database. A schema older than this version is migrated
        first, exactly as a starting server would. A damaged file raises ``StoreDamaged`` (nothing left open)."""
        if not self.path.is_file():
            return False
        await self.check_intact()
        async with self._closing_on_damage():
            return await self._open_existing()

    async def _open_existing(self) -> bool:
        try:
            db = await aiosqlite.connect(
                self.path.as_uri() + "?mode=rw", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.OperationalError:  # removed between the check and the open
            return False
        self._db = db
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA foreign_keys=ON")
        done: set[str] = set()
        with contextlib.suppress(sqlite3.OperationalError):  # no migrations table: a server is creating the db now
            done.update(await self.applied_migrations())
        if any(name not in done for name, _ in MIGRATIONS):
            await self.migrate()
        await db.execute("PRAGMA query_only=ON")
        return True

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def change_stamp(self) -> tuple[int, int]:
        """A value that differs whenever the database did change: ``PRAGMA data_version`` (other connections'
        commits) and this connection's count of changed rows (a write transaction that changed nothing leaves it)."""
        (version,) = await self._point("PRAGMA data_version")
        return int(version[0]), self.db.total_changes

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` as one write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``; ``ROLLBACK`` when it raises) in
        ONE trip to the connection's thread. Awaiting each statement, its fetch and its cursor's close was a trip
        each (an event-loop wake-up and a hand-over of the interpreter lock), ~80 for one turn's start and end. A
        caller cancelled meanwhile leaves the transaction to finish whole or not at all, never half-way."""
        db = self.db

        def tx() -> T:
            conn = db._conn  # pyright: ignore[reportPrivateUsage] (the connection of aiosqlite's own thread)
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = body(conn)
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on some errors (full disk, I/O)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._commits += 1
            return out

        async with self._lock:
            try:
                return await db._execute(tx)  # pyright: ignore[reportPrivateUsage] (aiosqlite's one-trip call)
            except sqlite3.IntegrityError as exc:  # a constraint the method did not map more precisely
                raise Conflict(f"the fleet database refused the change ({exc}); reload the state and retry") from exc

    async def _update(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement as its own transaction; the number of rows it changed."""
        return await self._write(lambda db: db.execute(sql, params).rowcount)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:  # one hop to the connection's thread (execute, fetch and close there together)
            return list(await self.db.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _point(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A small indexed read (one agent, a few ids, a pragma) on the event loop's own thread, through a second,
        query-only connection: no hop to the connection's thread, which costs ~0.5 ms on a loaded box (most of a
        one-agent status call). In WAL mode a reader never waits for a writer; if the database is busy all the same
        (a checkpoint, a recovery) it goes the usual way after ``POINT_READ_BUSY_S``."""
        reader = self._point_reader()
        if reader is not None:
            try:
                return reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                pass
        return await self._all(sql, params)

    def _point_reader(self) -> sqlite3.Connection | None:
        if self._db is None:
            return None
        if self._reader is None:
            try:
                reader = sqlite3.connect(self.path.as_uri() + "?mode=rw", uri=True, isolation_level=None,
                                         timeout=POINT_READ_BUSY_S, check_same_thread=False)  # fmt: skip
                reader.execute("PRAGMA query_only=ON")
            except sqlite3.Error:
                return None
            reader.row_factory = sqlite3.Row
            self._reader = reader
        return self._reader

    # -- migrations ------------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction. Returns the names applied."""
        applied: list[str] = []
        async with self._lock:
            await self.db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
        for name, statements in MIGRATIONS:

            def apply(db: sqlite3.Connection, name: str = name, statements: Sequence[str] = statements) -> bool:
                if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                    return False
                for stmt in statements:
                    db.execute(stmt)
                db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
                return True

            if await self._write(apply):
                applied.append(name)
        return applied

    async def applied_migrations(self) -> list[str]:
        return [r["name"] for r in await self._all("SELECT name FROM migrations ORDER BY name")]

    # -- agents ----------------------------------------------------------------------------------------------
