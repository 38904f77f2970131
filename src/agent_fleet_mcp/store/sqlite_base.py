"""The SQLite store's connection: opening (WAL, busy timeout, the bounded integrity check), transactions and
migrations. The queries are in sqlite.py (agents and turns) and sqlite_batches.py (usage, batches and runs).

WAL mode and a busy timeout let several processes (two servers, the CLI) share one fleet home. One connection per
store, used by one thread (aiosqlite's): each read and each write transaction is one trip there, so none interleaves
with another; writes asked for together share a trip and a transaction (``_write``, group commit). Claims that must
be atomic across processes are single conditional statements inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

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


class _Write(Generic[T]):
    """One caller's write transaction body, and what became of it (``SqliteConnection._write``)."""

    __slots__ = ("body", "committed", "done", "error", "result", "taken")

    def __init__(self, body: Callable[[sqlite3.Connection], T]) -> None:
        self.body = body
        self.taken = False  # a trip to the connection's thread has it: it runs, whatever its caller does
        self.done = anyio.Event()  # set on the event loop once that trip is over
        self.result: Any = None
        self.error: BaseException | None = None
        self.committed = False


def _run_one(conn: sqlite3.Connection, w: _Write[Any], *, savepoint: bool) -> bool:
    """``w``'s body in the open transaction, inside a savepoint when other writes share it; False when it raised
    (what it changed is undone: back to its savepoint, or the whole transaction when it has it alone)."""
    if savepoint:
        conn.execute("SAVEPOINT w")
    try:
        w.result = w.body(conn)
    except BaseException as exc:
        w.error = exc
        if conn.in_transaction:
            conn.execute("ROLLBACK TO w" if savepoint else "ROLLBACK")
            if savepoint:
                conn.execute("RELEASE w")
        return False
    if savepoint:
        conn.execute("RELEASE w")
    return True


def _damage_message(text: str) -> bool:
    return any(k in text for k in ("malformed", "not a database", "corrupt", "disk image"))


class SqliteConnection:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads on the event loop's thread (``_point``)
        self._lock = anyio.Lock()
        self._queued: list[_Write[Any]] = []  # writes no trip to the connection's thread took yet (``_write``)
        self._trip: anyio.Event | None = None  # set when the write trip in the connection's thread is over
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
        """Run ``body`` as one write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``; rolled back when it raises) in
        ONE trip to the connection's thread. Writes asked for while another is in that thread go together in the
        next trip and the next transaction (group commit), each inside a savepoint of its own: each is still whole
        or not at all, and one that raises leaves the others. 200 agents created at once made 200 trips, one after
        another (0.37 s before the first turn could be claimed); most of a trip is waiting for the event loop and
        the interpreter lock, not SQLite. A caller cancelled meanwhile leaves its write to finish whole or not at
        all: never run when no trip took it yet, else done with its group."""
        write = _Write(body)
        self._queued.append(write)
        try:
            while not write.taken:
                if self._trip is not None:  # a trip is in the connection's thread: the next one takes ours
                    await self._trip.wait()
                    continue
                group, self._queued = self._queued, []
                for w in group:
                    w.taken = True
                self._trip = trip = anyio.Event()
                try:
                    await self._write_group(group)
                finally:  # also when cancelled: the writes still queued are taken by a caller that waited
                    self._trip = None
                    trip.set()
        finally:
            if not write.taken:  # cancelled before any trip took it: it never runs
                self._queued.remove(write)
        await write.done.wait()
        if write.error is not None:
            if isinstance(write.error, sqlite3.IntegrityError):  # a constraint the method did not map more precisely
                raise Conflict(
                    f"the fleet database refused the change ({write.error}); reload the state and retry"
                ) from write.error
            raise write.error
        return write.result

    async def _write_group(self, group: list[_Write[Any]]) -> None:
        """One trip: the writes of ``group`` in as few transactions as they allow (one unless SQLite itself rolled
        one back: then the writes it held fail with that error, and the rest go on in a new one). Each write's
        ``done`` is set on the event loop once the trip is over, also when the caller that made it was cancelled."""
        loop = asyncio.get_running_loop()
        ran = False

        def trip() -> None:
            nonlocal ran
            ran = True
            conn = db._conn  # pyright: ignore[reportPrivateUsage] (the connection of aiosqlite's own thread)
            try:
                self._run_group(conn, group)
            except BaseException as exc:  # a savepoint or rollback statement failed: nothing of the rest is known
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                for w in group:
                    if not w.committed:
                        w.error = w.error or exc
            finally:
                for w in group:
                    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                        loop.call_soon_threadsafe(w.done.set)

        try:
            db = self.db
            await db._execute(trip)  # pyright: ignore[reportPrivateUsage] (aiosqlite's one-trip call)
        except Exception as exc:  # never reached the connection's thread (the store is closed): none of them ran
            if not ran:
                for w in group:
                    w.error = exc
                    w.done.set()

    def _run_group(self, conn: sqlite3.Connection, group: list[_Write[Any]]) -> None:
        savepoints = len(group) > 1  # a write alone has the transaction to itself
        held: list[_Write[Any]] = []  # done in the open transaction: they fail with it if it is lost
        for i, w in enumerate(group):
            if not conn.in_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except BaseException as exc:  # busy for the whole timeout, I/O: the rest cannot be written either
                    for rest in group[i:]:
                        rest.error = exc
                    return
                held = []
            if _run_one(conn, w, savepoint=savepoints):
                held.append(w)
            elif not conn.in_transaction:  # SQLite rolled the whole transaction back by itself (full disk, I/O)
                for lost in held:
                    lost.error = w.error
                held = []
        if conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for w in held:
                    w.error = exc
                return
            self._commits += 1
        for w in held:
            w.committed = True

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
