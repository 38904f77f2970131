"""SQLite store: every SQL statement of the project lives in this file.

WAL mode and a busy timeout let several processes (two servers, the CLI) share one fleet home. One connection per
``SqliteStore``; an anyio lock keeps one task's transaction from interleaving with another's on that connection.
Claims that must be atomic across processes (starting a queued turn under the global cap, finishing a turn) are
single conditional statements inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from agent_fleet_mcp.errors import AlreadyExists, Conflict, LimitReached, StoreDamaged
from agent_fleet_mcp.private import private_dirs, touch_private
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.integrity import quick_check
from agent_fleet_mcp.store.migrations import MIGRATIONS
from agent_fleet_mcp.store.models import (
    AgentRow,
    AgentStatus,
    AgentTotals,
    BatchRow,
    BatchStatus,
    FleetTotals,
    RunEnd,
    RunRow,
    RunSpec,
    TurnEnd,
    TurnRow,
    TurnStatsUpdate,
    TurnStatus,
    TurnUsage,
)
from agent_fleet_mcp.store.protocol import Store

BUSY_TIMEOUT_MS = 10_000
OPEN_CHECK_S = 2.0  # the integrity check at open; a bigger database is checked as far as this allows


_AGENT_COLUMNS = (
    "id", "name", "status", "spec_json", "spec_hash", "cwd", "idempotency_key", "session_id", "last_error",
    "created_at", "updated_at", "deleted_at",
)  # fmt: skip
_TURN_RESTORE_COLUMNS = (
    "agent_id", "n", "status", "reason", "prompt", "runner", "model", "pid", "proc_start", "out_path", "queued_at",
    "started_at", "ended_at", "exit_code", "result_text", "is_error", "error",
)  # fmt: skip


def _damage_message(text: str) -> bool:
    return any(k in text for k in ("malformed", "not a database", "corrupt", "disk image"))


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
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
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncGenerator[aiosqlite.Connection]:
        async with self._lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):  # a constraint the method did not map more precisely
                    raise Conflict(
                        f"the fleet database refused the change ({exc}); reload the state and retry"
                    ) from exc
                raise
            await self.db.execute("COMMIT")
            self._commits += 1

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            cur = await self.db.execute(sql, params)
            rows = await cur.fetchall()
            await cur.close()
            return list(rows)

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # -- migrations ------------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction. Returns the names applied."""
        applied: list[str] = []
        async with self._lock:
            await self.db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
        for name, statements in MIGRATIONS:
            async with self._tx() as db:
                cur = await db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,))
                done = await cur.fetchone()
                await cur.close()
                if done:
                    continue
                for stmt in statements:
                    await db.execute(stmt)
                await db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    async def applied_migrations(self) -> list[str]:
        return [r["name"] for r in await self._all("SELECT name FROM migrations ORDER BY name")]

    # -- agents ----------------------------------------------------------------------------------------------
    async def insert_agent(
        self,
        *,
        id: str,
        name: str,
        spec: AgentSpec,
        spec_hash: str,
        cwd: str,
        idempotency_key: str | None,
        parent_id: str | None = None,
        root_id: str | None = None,
        depth: int = 1,
        batch_id: str | None = None,
        max_tree_agents: int | None = None,
    ) -> AgentRow:
        """Insert a live agent. The database enforces one live agent per name and per idempotency key (across
        processes): a clash raises ``AlreadyExists``. With ``root_id`` and ``max_tree_agents``, a tree that already
        holds that many agents (deleted ones count: a tree cannot recycle its quota) raises ``LimitReached``."""
        now = time.time()
        async with self._tx() as db:
            if root_id is not None and max_tree_agents is not None:
                cur = await db.execute("SELECT COUNT(*) FROM agents WHERE root_id = ?", (root_id,))
                row = await cur.fetchone()
                await cur.close()
                if row is not None and int(row[0]) >= max_tree_agents:
                    raise LimitReached(
                        f"this delegation tree (root {root_id}) already has {int(row[0])} agents, the most "
                        f"AGENT_FLEET_MAX_TREE_AGENTS ({max_tree_agents}) allows; reuse an agent with command_agent, "
                        "or finish the task yourself"
                    )
            try:
                await db.execute(
                    "INSERT INTO agents (id, name, status, spec_json, spec_hash, cwd, idempotency_key, created_at,"
                    " updated_at, parent_id, root_id, depth, batch_id) VALUES (?, ?, 'idle', ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?)",
                    (id, name, spec.model_dump_json(), spec_hash, cwd, idempotency_key, now, now, parent_id,
                     root_id or id, depth, batch_id),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                if idempotency_key is not None:
                    cur = await db.execute(
                        "SELECT 1 FROM agents WHERE idempotency_key = ? AND status != 'deleted'", (idempotency_key,)
                    )
                    taken = await cur.fetchone()
                    await cur.close()
                    if taken:
                        raise AlreadyExists("idempotency_key", idempotency_key) from None
                raise AlreadyExists("name", name) from None
        row = await self.get_agent(id)
        assert row is not None
        return row

    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow | None:
        """By id, or by name among live agents (and the newest deleted one with include_deleted)."""
        r = await self._one("SELECT * FROM agents WHERE id = ?", (ref,))
        if r is None:
            r = await self._one(
                "SELECT * FROM agents WHERE name = ? AND (status != 'deleted' OR ?) ORDER BY created_at DESC LIMIT 1",
                (ref, include_deleted),
            )
        if r is None or (r["status"] == "deleted" and not include_deleted):
            return None
        return AgentRow.from_row(r)

    async def find_by_idempotency_key(self, key: str) -> AgentRow | None:
        r = await self._one(
            "SELECT * FROM agents WHERE idempotency_key = ? AND status != 'deleted' ORDER BY created_at DESC LIMIT 1",
            (key,),
        )
        return AgentRow.from_row(r) if r else None

    async def list_agents(self, *, include_deleted: bool = False) -> list[AgentRow]:
        rows = await self._all(
            "SELECT * FROM agents WHERE status != 'deleted' OR ? ORDER BY created_at, id", (include_deleted,)
        )
        return [AgentRow.from_row(r) for r in rows]

    async def status_agents(self, *, limit: int) -> list[AgentRow]:
        """At most ``limit`` live agents for the fleet's status: running, queued and failed ones first, then the
        others, each group most recently changed first. Two index range reads, whatever the fleet's size."""
        rows = await self._all(
            "SELECT * FROM agents WHERE status IN ('running', 'queued', 'failed') ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        if len(rows) < limit:
            rows += await self._all(
                "SELECT * FROM agents WHERE status IN ('idle', 'stopped') ORDER BY updated_at DESC LIMIT ?",
                (limit - len(rows),),
            )
        return [AgentRow.from_row(r) for r in rows]

    async def fleet_totals(self) -> FleetTotals:
        """The live fleet summed in one aggregate read (see ``FleetTotals``), reused while the database is unchanged
        (no commit on this connection, the same ``PRAGMA data_version`` for the others'): a status poll of a quiet
        fleet reads no turn."""
        version = await self._one("PRAGMA data_version")
        key = (int(version[0]), self._commits)
        if self._totals is not None and self._totals[0] == key:
            return self._totals[1]
        totals = await self._fleet_totals()
        self._totals = (key, totals)
        return totals

    async def _fleet_totals(self) -> FleetTotals:
        r = await self._one(
            "SELECT COUNT(*) AS agents, COALESCE(SUM(a.status = 'running'), 0) AS running,"
            " COALESCE(SUM(a.status = 'idle'), 0) AS idle, COALESCE(SUM(a.status = 'failed'), 0) AS failed,"
            " COALESCE(SUM(a.status = 'stopped'), 0) AS stopped, COALESCE(SUM(t.queued), 0) AS queued,"
            " COALESCE(SUM(t.i), 0) AS i, COALESCE(SUM(t.o), 0) AS o, COALESCE(SUM(t.cr), 0) AS cr,"
            " COALESCE(SUM(t.cw), 0) AS cw,"
            " COALESCE(SUM(CASE WHEN t.unpriced = 0 THEN ROUND(t.cost, 6) END), 0) AS cost"
            " FROM agents a LEFT JOIN (SELECT agent_id, SUM(status = 'queued') AS queued, SUM(input_tokens) AS i,"
            "  SUM(output_tokens) AS o, SUM(cache_read_tokens) AS cr, SUM(cache_write_tokens) AS cw,"
            "  SUM(cost_usd) AS cost,"
            "  SUM(CASE WHEN cost_usd IS NULL AND (input_tokens + output_tokens) > 0 THEN 1 ELSE 0 END) AS unpriced"
            "  FROM turns GROUP BY agent_id) t ON t.agent_id = a.id"
            " WHERE a.status != 'deleted'"
        )
        return FleetTotals(
            agents=int(r["agents"]), running=int(r["running"]), idle=int(r["idle"]), failed=int(r["failed"]),
            stopped=int(r["stopped"]), queued=int(r["queued"]), input_tokens=int(r["i"]), output_tokens=int(r["o"]),
            cache_read_tokens=int(r["cr"]), cache_write_tokens=int(r["cw"]), cost_usd=round(float(r["cost"]), 6),
        )  # fmt: skip

    async def set_agent_status(self, agent_id: str, status: AgentStatus, *, last_error: str | None = None) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE agents SET status = ?, last_error = COALESCE(?, last_error), updated_at = ?"
                " WHERE id = ? AND status != 'deleted'",
                (status, last_error, time.time(), agent_id),
            )

    async def mark_queued_unless_running(self, agent_id: str) -> None:
        """The agent waits for its next turn, unless one of its turns runs: one statement, so a concurrent claim
        (which sets ``running``) is never overwritten."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE agents SET status = 'queued', updated_at = ? WHERE id = ? AND status != 'deleted'"
                " AND NOT EXISTS (SELECT 1 FROM turns WHERE agent_id = ? AND status = 'running')",
                (time.time(), agent_id, agent_id),
            )

    async def set_session_id(self, agent_id: str, session_id: str) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE agents SET session_id = ? WHERE id = ?", (session_id, agent_id))

    async def mark_deleted(self, agent_id: str) -> None:
        now = time.time()
        async with self._tx() as db:
            await db.execute(
                "UPDATE agents SET status = 'deleted', deleted_at = ?, updated_at = ? WHERE id = ?",
                (now, now, agent_id),
            )

    async def purge_agent(self, agent_id: str) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE runs SET agent_id = NULL WHERE agent_id = ?", (agent_id,))
            await db.execute("DELETE FROM turns WHERE agent_id = ?", (agent_id,))
            await db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))

    # -- turns -----------------------------------------------------------------------------------------------
    async def insert_turn(self, *, agent_id: str, prompt: str, runner: str, model: str | None) -> TurnRow:
        async with self._tx() as db:
            cur = await db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM turns WHERE agent_id = ?", (agent_id,))
            row = await cur.fetchone()
            await cur.close()
            assert row is not None
            n = int(row[0])
            await db.execute(
                "INSERT INTO turns (agent_id, n, status, prompt, runner, model, queued_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (agent_id, n, prompt, runner, model, time.time()),
            )
        turn = await self.get_turn(agent_id, n)
        assert turn is not None
        return turn

    async def get_turn(self, agent_id: str, n: int) -> TurnRow | None:
        r = await self._one("SELECT * FROM turns WHERE agent_id = ? AND n = ?", (agent_id, n))
        return TurnRow.from_row(r) if r else None

    async def turns_of(self, agent_id: str) -> list[TurnRow]:
        rows = await self._all("SELECT * FROM turns WHERE agent_id = ? ORDER BY n", (agent_id,))
        return [TurnRow.from_row(r) for r in rows]

    async def latest_turns(self, agent_ids: Sequence[str]) -> dict[str, TurnRow]:
        if not agent_ids:
            return {}
        marks = ",".join("?" * len(agent_ids))
        rows = await self._all(
            f"SELECT t.* FROM turns t JOIN (SELECT agent_id, MAX(n) AS n FROM turns WHERE agent_id IN ({marks})"
            " GROUP BY agent_id) m ON t.agent_id = m.agent_id AND t.n = m.n",
            list(agent_ids),
        )
        return {r["agent_id"]: TurnRow.from_row(r) for r in rows}

    async def turns_with_status(self, *statuses: TurnStatus) -> list[TurnRow]:
        marks = ",".join("?" * len(statuses))
        rows = await self._all(
            f"SELECT * FROM turns WHERE status IN ({marks}) ORDER BY queued_at, agent_id, n", list(statuses)
        )
        return [TurnRow.from_row(r) for r in rows]

    async def count_turns(self, agent_id: str, *statuses: TurnStatus) -> int:
        marks = ",".join("?" * len(statuses))
        r = await self._one(
            f"SELECT COUNT(*) AS c FROM turns WHERE agent_id = ? AND status IN ({marks})", [agent_id, *statuses]
        )
        return int(r["c"])

    async def claim_turn(self, agent_id: str, n: int, *, max_running: int, claimer: str | None = None) -> bool:
        """Atomically move a queued turn to running if its agent has no running turn and the fleet-wide number of
        running turns is below ``max_running`` -- or, whatever the count, while an ancestor of the agent (the agent
        that created it through a nested server, its creator ...) has a running turn: that turn's slot covers the
        descendants it waits on, so a tree of waiting parents never deadlocks on the cap (the tree's size is bounded
        separately). Safe across processes sharing the database. ``claimer`` names the claiming server
        (runners/started.py) until the turn's pid is recorded."""
        async with self._tx() as db:
            return await _claim(db, agent_id, n, max_running=max_running, claimer=claimer, now=time.time())

    async def claim_queued(self, *, max_running: int, claimer: str | None = None, limit: int = 16) -> list[TurnRow]:
        """Claim the next claimable queued turns, oldest first, as ``claim_turn`` claims one (one running turn per
        agent, under ``max_running`` unless an ancestor runs), at most ``limit``; return them running. Queued turns
        of deleted agents are cancelled on the way. One indexed read finds the candidates (none when the cap is
        full and no queued agent has a parent: no write transaction at all); the claims are one transaction."""
        cands = await self._all(_CANDIDATES_SQL, (max_running,))
        if not cands:
            return []
        now = time.time()
        claimed: list[tuple[str, int]] = []
        async with self._tx() as db:
            cur = await db.execute("SELECT COUNT(*) FROM turns WHERE status = 'running'")
            row = await cur.fetchone()
            await cur.close()
            running = int(row[0]) if row else 0
            for c in cands:
                if c["agent_status"] == "deleted":
                    await db.execute(
                        "UPDATE turns SET status = 'cancelled', reason = 'agent deleted', ended_at = ?"
                        " WHERE agent_id = ? AND status = 'queued'",
                        (now, c["agent_id"]),
                    )
                    continue
                if len(claimed) >= limit or (running >= max_running and c["parent_id"] is None):
                    continue  # the cap is full: only a turn under a running ancestor can still start
                if await _claim(db, c["agent_id"], c["n"], max_running=max_running, claimer=claimer, now=now):
                    claimed.append((c["agent_id"], c["n"]))
                    running += 1
            rows: list[TurnRow] = []
            for agent_id, n in claimed:
                cur = await db.execute("SELECT * FROM turns WHERE agent_id = ? AND n = ?", (agent_id, n))
                r = await cur.fetchone()
                await cur.close()
                if r is not None:
                    rows.append(TurnRow.from_row(r))
        return rows

    async def set_turn_process(
        self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str, model: str | None
    ) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE turns SET pid = ?, proc_start = ?, out_path = ?, model = COALESCE(?, model), last_event_at = ?"
                " WHERE agent_id = ? AND n = ?",
                (pid, proc_start, out_path, model, time.time(), agent_id, n),
            )

    async def adopt_turn_process(self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str) -> bool:
        """Record the process a running turn's started marker names: the run that really started (runners/started.py),
        when the server that spawned it died before recording it or its own spawn found the turn already started.
        True when the row changed."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE turns SET pid = ?, proc_start = ?, out_path = COALESCE(out_path, ?),"
                " last_event_at = COALESCE(last_event_at, ?) WHERE agent_id = ? AND n = ? AND status = 'running'"
                " AND (pid IS NULL OR pid != ?)",
                (pid, proc_start, out_path, time.time(), agent_id, n, pid),
            )
            ok = cur.rowcount == 1
            await cur.close()
        return ok

    async def restore_agent(self, row: dict[str, Any]) -> None:
        """Insert an agent rebuilt by ``doctor --repair`` (columns of ``agents``; unknown keys are ignored)."""
        cols = [c for c in _AGENT_COLUMNS if c in row]
        async with self._tx() as db:
            await db.execute(
                f"INSERT INTO agents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
            )

    async def restore_turn(self, row: dict[str, Any]) -> None:
        """Insert a turn rebuilt from its files by ``doctor --repair`` (columns of ``turns``)."""
        cols = [c for c in _TURN_RESTORE_COLUMNS if c in row]
        async with self._tx() as db:
            await db.execute(
                f"INSERT INTO turns ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
            )

    async def requeue_turn(self, agent_id: str, n: int) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE turns SET status = 'queued', started_at = NULL"
                " WHERE agent_id = ? AND n = ? AND status = 'running' AND pid IS NULL",
                (agent_id, n),
            )

    async def update_turn_stats(self, agent_id: str, n: int, stats: TurnStatsUpdate) -> None:
        s = stats
        async with self._tx() as db:
            await db.execute(
                "UPDATE turns SET input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, cache_write_tokens = ?,"
                " cost_usd = ?, context_tokens = ?, tool_calls = ?, activity = ?, last_event_at = ?, reads_json = ?,"
                " writes_json = ?, model = ? WHERE agent_id = ? AND n = ?",
                (s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens, s.cost_usd,
                 s.context_tokens, s.tool_calls, s.activity, s.last_event_at, json.dumps(s.reads),
                 json.dumps(s.writes), s.model, agent_id, n),
            )  # fmt: skip

    async def finish_turn(
        self,
        agent_id: str,
        n: int,
        *,
        status: TurnEnd,
        reason: str | None = None,
        exit_code: int | None = None,
        result_text: str | None = None,
        is_error: bool | None = None,
        error: str | None = None,
        agent_status: AgentStatus | None = None,
        ended_at: float | None = None,
    ) -> bool:
        """Close a queued/running turn (first closer wins, across processes) and set the agent's status.
        ``ended_at``: when it really ended, if earlier than now (a process that ended while no server was up)."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE turns SET status = ?, reason = ?, exit_code = ?, result_text = ?, is_error = ?, error = ?,"
                " ended_at = ? WHERE agent_id = ? AND n = ? AND status IN ('queued', 'running')",
                (status, reason, exit_code, result_text, is_error, error, ended_at or now, agent_id, n),
            )
            ok = cur.rowcount == 1
            await cur.close()
            if ok and agent_status is not None:
                await db.execute(
                    "UPDATE agents SET status = ?, last_error = CASE WHEN ? IS NOT NULL THEN ? ELSE last_error END,"
                    " updated_at = ? WHERE id = ? AND status != 'deleted'",
                    (agent_status, error, error, now, agent_id),
                )
        return ok

    async def agent_totals(self, agent_ids: Sequence[str]) -> dict[str, AgentTotals]:
        """Per agent: turn count, token sums, cost sum (None when no turn is priced), tool calls."""
        if not agent_ids:
            return {}
        marks = ",".join("?" * len(agent_ids))
        rows = await self._all(
            "SELECT agent_id, COUNT(*) AS turns, SUM(input_tokens) AS input_tokens,"
            " SUM(output_tokens) AS output_tokens,"
            " SUM(cache_read_tokens) AS cache_read_tokens, SUM(cache_write_tokens) AS cache_write_tokens,"
            " SUM(cost_usd) AS cost_usd, SUM(tool_calls) AS tool_calls,"
            " SUM(CASE WHEN cost_usd IS NULL AND (input_tokens + output_tokens) > 0 THEN 1 ELSE 0 END) AS unpriced,"
            " SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued,"
            " MIN(started_at) AS first_started, MAX(COALESCE(ended_at, 0)) AS last_ended"
            f" FROM turns WHERE agent_id IN ({marks}) GROUP BY agent_id",
            list(agent_ids),
        )
        return {
            r["agent_id"]: AgentTotals(
                turns=int(r["turns"]), queued=int(r["queued"] or 0), input_tokens=int(r["input_tokens"] or 0),
                output_tokens=int(r["output_tokens"] or 0), cache_read_tokens=int(r["cache_read_tokens"] or 0),
                cache_write_tokens=int(r["cache_write_tokens"] or 0), cost_usd=r["cost_usd"],
                unpriced=int(r["unpriced"] or 0), tool_calls=int(r["tool_calls"] or 0),
                first_started=r["first_started"], last_ended=r["last_ended"],
            )
            for r in rows
        }  # fmt: skip

    async def spend_since(self, since: float) -> float:
        """Cost of every turn (deleted agents included) started at or after ``since``; unpriced turns count 0."""
        r = await self._one(
            "SELECT COALESCE(SUM(cost_usd), 0) AS c FROM turns WHERE COALESCE(started_at, queued_at) >= ?", (since,)
        )
        return float(r["c"])

    async def batch_spend(self, batch_id: str) -> float:
        """Cost of every turn of the agents created for a batch."""
        r = await self._one(
            "SELECT COALESCE(SUM(t.cost_usd), 0) AS c FROM turns t JOIN agents a ON a.id = t.agent_id"
            " WHERE a.batch_id = ?",
            (batch_id,),
        )
        return float(r["c"])

    async def turn_usage(self, *, since: float | None = None) -> list[TurnUsage]:
        """Tokens and cost of every turn (deleted agents included) queued or started at or after ``since``, with
        the agent's name and status, oldest first. For the CLI's cost report."""
        rows = await self._all(
            "SELECT t.agent_id, a.name AS agent, a.status AS agent_status, t.n, t.status, t.runner, t.model,"
            " t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_write_tokens, t.cost_usd,"
            " t.tool_calls, t.queued_at, t.started_at, t.ended_at"
            " FROM turns t JOIN agents a ON a.id = t.agent_id"
            " WHERE ? IS NULL OR COALESCE(t.started_at, t.queued_at) >= ?"
            " ORDER BY COALESCE(t.started_at, t.queued_at), t.agent_id, t.n",
            (since, since),
        )
        return [TurnUsage(**dict(r)) for r in rows]

    # -- batches and runs ------------------------------------------------------------------------------------
    async def insert_batch(
        self,
        batch_id: str,
        runs: Sequence[RunSpec],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        budget_usd: float | None = None,
    ) -> None:
        """A batch and its runs in one transaction; a taken idempotency key or batch id raises ``AlreadyExists``."""
        now = time.time()
        async with self._tx() as db:
            try:
                await db.execute(
                    "INSERT INTO batches (id, created_at, status, idempotency_key, request_hash, budget_usd)"
                    " VALUES (?, ?, 'running', ?, ?, ?)",
                    (batch_id, now, idempotency_key, request_hash, budget_usd),
                )
            except sqlite3.IntegrityError:
                if idempotency_key is not None:
                    cur = await db.execute("SELECT 1 FROM batches WHERE idempotency_key = ?", (idempotency_key,))
                    taken = await cur.fetchone()
                    await cur.close()
                    if taken:
                        raise AlreadyExists("idempotency_key", idempotency_key, holder="a batch") from None
                raise AlreadyExists("id", batch_id, holder="a batch") from None
            for seq, run in enumerate(runs):
                await db.execute(
                    "INSERT INTO runs (batch_id, run_id, seq, template, input, depends_on_json, cwd, status)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting')",
                    (batch_id, run.run_id, seq, run.template, run.input, json.dumps(run.depends_on), run.cwd),
                )

    async def find_batch_by_key(self, idempotency_key: str) -> BatchRow | None:
        r = await self._one("SELECT * FROM batches WHERE idempotency_key = ?", (idempotency_key,))
        return BatchRow.from_row(r) if r else None

    async def get_batch(self, batch_id: str) -> BatchRow | None:
        r = await self._one("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return BatchRow.from_row(r) if r else None

    async def list_batches(self, *, status: BatchStatus | None = None) -> list[BatchRow]:
        if status is None:
            rows = await self._all("SELECT * FROM batches ORDER BY created_at")
        else:
            rows = await self._all("SELECT * FROM batches WHERE status = ? ORDER BY created_at", (status,))
        return [BatchRow.from_row(r) for r in rows]

    async def runs_of(self, batch_id: str) -> list[RunRow]:
        rows = await self._all("SELECT * FROM runs WHERE batch_id = ? ORDER BY seq", (batch_id,))
        return [RunRow.from_row(r) for r in rows]

    async def start_run(self, batch_id: str, run_id: str, *, agent_id: str) -> bool:
        """waiting -> running with the agent created for it; True when this call moved it."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE runs SET status = 'running', agent_id = ?, started_at = ?"
                " WHERE batch_id = ? AND run_id = ? AND status = 'waiting'",
                (agent_id, time.time(), batch_id, run_id),
            )
            ok = cur.rowcount == 1
            await cur.close()
        return ok

    async def finish_run(self, batch_id: str, run_id: str, *, status: RunEnd, reason: str | None = None) -> bool:
        """Close a waiting or running run; the first closer wins (True), later calls change nothing."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE runs SET status = ?, reason = ?, ended_at = ?"
                " WHERE batch_id = ? AND run_id = ? AND status IN ('waiting', 'running')",
                (status, reason, time.time(), batch_id, run_id),
            )
            ok = cur.rowcount == 1
            await cur.close()
        return ok

    async def finish_batch(self, batch_id: str, status: BatchStatus) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE batches SET status = ?, ended_at = ? WHERE id = ? AND status = 'running'",
                (status, time.time(), batch_id),
            )


# Queued turns that could start: each agent's oldest queued turn, if the agent runs nothing, and only while the cap
# has room -- unless the agent has a parent (a running ancestor's slot may cover it) or is deleted (cancel it).
_CANDIDATES_SQL = (
    "SELECT t.agent_id, t.n, a.status AS agent_status, a.parent_id FROM turns t JOIN agents a ON a.id = t.agent_id"
    " WHERE t.status = 'queued'"
    " AND (a.status = 'deleted' OR a.parent_id IS NOT NULL"
    "  OR (SELECT COUNT(*) FROM turns WHERE status = 'running') < ?)"
    " AND t.n = (SELECT MIN(q.n) FROM turns q WHERE q.agent_id = t.agent_id AND q.status = 'queued')"
    " AND NOT EXISTS (SELECT 1 FROM turns r WHERE r.agent_id = t.agent_id AND r.status = 'running')"
    " ORDER BY t.queued_at, t.agent_id, t.n"
)


async def _claim(
    db: aiosqlite.Connection, agent_id: str, n: int, *, max_running: int, claimer: str | None, now: float
) -> bool:
    """``claim_turn``'s conditional UPDATE, inside the caller's ``BEGIN IMMEDIATE``."""
    cur = await db.execute(
        "UPDATE turns SET status = 'running', started_at = ?, claimed_by = ? WHERE agent_id = ? AND n = ?"
        " AND status = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM turns WHERE agent_id = ? AND status = 'running')"
        " AND ((SELECT COUNT(*) FROM turns WHERE status = 'running') < ?"
        "  OR EXISTS (WITH RECURSIVE anc(id) AS ("
        "   SELECT parent_id FROM agents WHERE id = ? AND parent_id IS NOT NULL"
        "   UNION SELECT a.parent_id FROM agents a JOIN anc ON a.id = anc.id WHERE a.parent_id IS NOT NULL)"
        "   SELECT 1 FROM turns t JOIN anc ON t.agent_id = anc.id WHERE t.status = 'running'))",
        (now, claimer, agent_id, n, agent_id, max_running, agent_id),
    )
    ok = cur.rowcount == 1
    await cur.close()
    if ok:
        await db.execute(
            "UPDATE agents SET status = 'running', updated_at = ? WHERE id = ? AND status != 'deleted'", (now, agent_id)
        )
    return ok


_conforms: type[Store] = SqliteStore  # pyright checks here that SqliteStore implements the Store protocol
