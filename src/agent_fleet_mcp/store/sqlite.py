"""SQLite store: ``SqliteStore``, the one implementation of the ``Store`` protocol. Its connection, transactions and
migrations are in sqlite_base.py, usage, batches and runs in sqlite_batches.py, agents and turns here; every SQL
statement of the project lives in these three files.

Claims that must be atomic across processes (starting a queued turn under the global cap, finishing a turn) are
single conditional statements inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from agent_fleet_mcp.errors import AlreadyExists, LimitReached
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.models import (
    AgentRow,
    AgentStatus,
    FleetTotals,
    TurnEnd,
    TurnRow,
    TurnStatsUpdate,
    TurnStatus,
    changes_to_json,
    workspace_to_json,
)
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.store.sqlite_base import POINT_READ_MAX_IDS
from agent_fleet_mcp.store.sqlite_batches import SqliteUsageAndBatches
from agent_fleet_mcp.worktrees import Changes, Workspace

_AGENT_COLUMNS = (
    "id", "name", "status", "spec_json", "spec_hash", "cwd", "idempotency_key", "session_id", "last_error",
    "created_at", "updated_at", "deleted_at", "workspace_json", "changes_json", "merged_at",
)  # fmt: skip
_TURN_RESTORE_COLUMNS = (
    "agent_id", "n", "status", "reason", "prompt", "runner", "model", "pid", "proc_start", "out_path", "queued_at",
    "started_at", "ended_at", "exit_code", "result_text", "is_error", "error",
)  # fmt: skip


class SqliteStore(SqliteUsageAndBatches):
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
        workspace: Workspace | None = None,
        prompt: str | None = None,
    ) -> AgentRow:
        """Insert a live agent, and with ``prompt`` its first turn in the same transaction. The database enforces
        one live agent per name and per idempotency key (across processes): a clash raises ``AlreadyExists``. With
        ``root_id`` and ``max_tree_agents``, a tree that already holds that many agents (deleted ones count: a tree
        cannot recycle its quota) raises ``LimitReached``."""
        now = time.time()

        def insert(db: sqlite3.Connection) -> None:
            if root_id is not None and max_tree_agents is not None:
                (count,) = db.execute("SELECT COUNT(*) FROM agents WHERE root_id = ?", (root_id,)).fetchone()
                if int(count) >= max_tree_agents:
                    raise LimitReached(
                        f"this delegation tree (root {root_id}) already has {int(count)} agents, the most "
                        f"AGENT_FLEET_MAX_TREE_AGENTS ({max_tree_agents}) allows; reuse an agent with command_agent, "
                        "or finish the task yourself"
                    )
            try:
                db.execute(
                    "INSERT INTO agents (id, name, status, spec_json, spec_hash, cwd, idempotency_key, created_at,"
                    " updated_at, parent_id, root_id, depth, batch_id, workspace_json) VALUES (?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (id, name, "idle" if prompt is None else "queued", spec.model_dump_json(), spec_hash, cwd,
                     idempotency_key, now, now, parent_id, root_id or id, depth, batch_id,
                     workspace_to_json(workspace)),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                if (
                    idempotency_key is not None
                    and db.execute(
                        "SELECT 1 FROM agents WHERE idempotency_key = ? AND status != 'deleted'", (idempotency_key,)
                    ).fetchone()
                ):
                    raise AlreadyExists("idempotency_key", idempotency_key) from None
                raise AlreadyExists("name", name) from None
            if prompt is not None:
                db.execute(
                    "INSERT INTO turns (agent_id, n, status, prompt, runner, model, queued_at)"
                    " VALUES (?, 1, 'queued', ?, ?, ?, ?)",
                    (id, prompt, spec.runner, spec.model, now),
                )

        await self._write(insert)
        row = await self.get_agent(id)
        assert row is not None
        return row

    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow | None:
        """By id, or by name among live agents (and the newest deleted one with include_deleted)."""
        rows = await self._point(  # one read: the id if it is one, else the name (each by its index)
            "SELECT * FROM agents WHERE id = ?1 UNION ALL SELECT * FROM (SELECT * FROM agents WHERE name = ?1"
            " AND (status != 'deleted' OR ?2) AND NOT EXISTS (SELECT 1 FROM agents WHERE id = ?1)"
            " ORDER BY created_at DESC LIMIT 1)",
            (ref, include_deleted),
        )
        r = rows[0] if rows else None
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

    async def page_agents(
        self, *, statuses: Sequence[AgentStatus], after: tuple[float, str] | None, limit: int
    ) -> list[AgentRow]:
        marks = ",".join("?" * len(statuses))
        created, aid = after or (-1.0, "")
        rows = await self._all(
            f"SELECT * FROM agents WHERE status IN ({marks}) AND (created_at, id) > (?, ?) ORDER BY created_at, id"
            " LIMIT ?",
            (*statuses, created, aid, limit),
        )
        return [AgentRow.from_row(r) for r in rows]

    async def fleet_totals(self) -> FleetTotals:
        """The live fleet summed in one aggregate read (see ``FleetTotals``), reused while the database is unchanged
        (no commit on this connection, the same ``PRAGMA data_version`` for the others'): a status poll of a quiet
        fleet reads no turn."""
        (version,) = await self._point("PRAGMA data_version")  # another connection's: it sees this one's commits too
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
        await self._update(
            "UPDATE agents SET status = ?, last_error = COALESCE(?, last_error), updated_at = ?"
            " WHERE id = ? AND status != 'deleted'",
            (status, last_error, time.time(), agent_id),
        )

    async def mark_queued_unless_running(self, agent_id: str) -> None:
        """The agent waits for its next turn, unless one of its turns runs: one statement, so a concurrent claim
        (which sets ``running``) is never overwritten."""
        await self._update(
            "UPDATE agents SET status = 'queued', updated_at = ? WHERE id = ? AND status != 'deleted'"
            " AND NOT EXISTS (SELECT 1 FROM turns WHERE agent_id = ? AND status = 'running')",
            (time.time(), agent_id, agent_id),
        )

    async def set_session_id(self, agent_id: str, session_id: str) -> None:
        await self._update("UPDATE agents SET session_id = ? WHERE id = ?", (session_id, agent_id))

    async def set_changes(self, agent_id: str, changes: Changes) -> None:
        await self._update("UPDATE agents SET changes_json = ? WHERE id = ?", (changes_to_json(changes), agent_id))

    async def set_merged(self, agent_id: str, at: float) -> None:
        await self._update("UPDATE agents SET merged_at = ?, updated_at = ? WHERE id = ?", (at, at, agent_id))

    async def isolated_agents(self) -> list[AgentRow]:
        rows = await self._all("SELECT * FROM agents WHERE workspace_json IS NOT NULL ORDER BY created_at, id")
        return [AgentRow.from_row(r) for r in rows]

    async def mark_deleted(self, agent_id: str) -> None:
        now = time.time()
        await self._update(
            "UPDATE agents SET status = 'deleted', deleted_at = ?, updated_at = ? WHERE id = ?", (now, now, agent_id)
        )

    async def purge_agent(self, agent_id: str) -> None:
        def purge(db: sqlite3.Connection) -> None:
            db.execute("UPDATE runs SET agent_id = NULL WHERE agent_id = ?", (agent_id,))
            db.execute("DELETE FROM turns WHERE agent_id = ?", (agent_id,))
            db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))

        await self._write(purge)

    # -- turns -----------------------------------------------------------------------------------------------
    async def insert_turn(self, *, agent_id: str, prompt: str, runner: str, model: str | None) -> TurnRow:
        def insert(db: sqlite3.Connection) -> TurnRow:
            (n,) = db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM turns WHERE agent_id = ?", (agent_id,)).fetchone()
            db.execute(
                "INSERT INTO turns (agent_id, n, status, prompt, runner, model, queued_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (agent_id, n, prompt, runner, model, time.time()),
            )
            return TurnRow.from_row(
                db.execute("SELECT * FROM turns WHERE agent_id = ? AND n = ?", (agent_id, n)).fetchone()
            )

        return await self._write(insert)

    async def get_turn(self, agent_id: str, n: int) -> TurnRow | None:
        rows = await self._point("SELECT * FROM turns WHERE agent_id = ? AND n = ?", (agent_id, n))
        return TurnRow.from_row(rows[0]) if rows else None

    async def turns_of(self, agent_id: str) -> list[TurnRow]:
        rows = await self._point("SELECT * FROM turns WHERE agent_id = ? ORDER BY n", (agent_id,))
        return [TurnRow.from_row(r) for r in rows]

    async def latest_turns(self, agent_ids: Sequence[str]) -> dict[str, TurnRow]:
        if not agent_ids:
            return {}
        marks = ",".join("?" * len(agent_ids))
        read = self._point if len(agent_ids) <= POINT_READ_MAX_IDS else self._all
        rows = await read(
            f"SELECT t.* FROM turns t JOIN (SELECT agent_id, MAX(n) AS n FROM turns WHERE agent_id IN ({marks})"
            " GROUP BY agent_id) m ON t.agent_id = m.agent_id AND t.n = m.n",
            list(agent_ids),
        )
        return {r["agent_id"]: TurnRow.from_row(r) for r in rows}

    async def first_turns(self, agent_ids: Sequence[str]) -> dict[str, TurnRow]:
        if not agent_ids:
            return {}
        read = self._point if len(agent_ids) <= POINT_READ_MAX_IDS else self._all
        marks = ",".join("?" * len(agent_ids))
        rows = await read(f"SELECT * FROM turns WHERE n = 1 AND agent_id IN ({marks})", list(agent_ids))
        return {r["agent_id"]: TurnRow.from_row(r) for r in rows}

    async def turns_with_status(self, *statuses: TurnStatus) -> list[TurnRow]:
        marks = ",".join("?" * len(statuses))
        rows = await self._all(
            f"SELECT * FROM turns WHERE status IN ({marks}) ORDER BY queued_at, agent_id, n", list(statuses)
        )
        return [TurnRow.from_row(r) for r in rows]

    async def running_turn_pids(self) -> list[tuple[str, int, int | None]]:
        rows = await self._point(
            "SELECT agent_id, n, pid FROM turns WHERE status = 'running' ORDER BY queued_at, agent_id, n"
        )
        return [(r["agent_id"], int(r["n"]), r["pid"]) for r in rows]

    async def budgeted_batches_running(self) -> list[str]:
        rows = await self._point(
            "SELECT DISTINCT a.batch_id FROM turns t JOIN agents a ON a.id = t.agent_id"
            " JOIN batches b ON b.id = a.batch_id WHERE t.status = 'running' AND b.budget_usd IS NOT NULL"
        )
        return [r["batch_id"] for r in rows]

    async def count_running(self) -> int:
        rows = await self._point("SELECT COUNT(*) FROM turns WHERE status = 'running'")  # turns_status covers it
        return int(rows[0][0])

    async def count_turns(self, agent_id: str, *statuses: TurnStatus) -> int:
        marks = ",".join("?" * len(statuses))
        [r] = await self._point(
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
        now = time.time()
        return await self._write(lambda db: _claim(db, agent_id, n, max_running=max_running, claimer=claimer, now=now))

    async def claim_queued(self, *, max_running: int, claimer: str | None = None, limit: int = 16) -> list[TurnRow]:
        """Claim the next claimable queued turns, oldest first, as ``claim_turn`` claims one (one running turn per
        agent, under ``max_running`` unless an ancestor runs), at most ``limit``; return them running. Queued turns
        of deleted agents are cancelled on the way. One indexed read finds the candidates (none when the cap is
        full and no queued agent has a parent: no write transaction at all); the claims are one transaction. With
        nothing queued (most dispatches: one follows every turn's end and every tick) a point read says so, with
        no trip to the connection's thread. With the cap full, only a turn of an agent under another (or of a
        deleted one, to cancel) can be claimed; two more point reads say whether there is any (one scan of the
        queued turns' index, ~0.3 ms with 440 queued, where the candidates' read took ~2 ms and a trip)."""
        if not await self._point("SELECT 1 FROM turns WHERE status = 'queued' LIMIT 1"):
            return []
        if await self.count_running() >= max_running and not await self._point(_EXEMPT_QUEUED_SQL):
            return []
        cands = await self._all(_CANDIDATES_SQL, (max_running,))
        if not cands:
            return []
        now = time.time()

        def claim(db: sqlite3.Connection) -> list[TurnRow]:
            (running,) = db.execute("SELECT COUNT(*) FROM turns WHERE status = 'running'").fetchone()
            rows: list[TurnRow] = []
            for c in cands:
                if c["agent_status"] == "deleted":
                    db.execute(
                        "UPDATE turns SET status = 'cancelled', reason = 'agent deleted', ended_at = ?"
                        " WHERE agent_id = ? AND status = 'queued'",
                        (now, c["agent_id"]),
                    )
                    continue
                if len(rows) >= limit or (running >= max_running and c["parent_id"] is None):
                    continue  # the cap is full: only a turn under a running ancestor can still start
                if _claim(db, c["agent_id"], c["n"], max_running=max_running, claimer=claimer, now=now):
                    r = db.execute("SELECT * FROM turns WHERE agent_id = ? AND n = ?", (c["agent_id"], c["n"]))
                    rows.append(TurnRow.from_row(r.fetchone()))
                    running += 1
            return rows

        return await self._write(claim)

    async def set_turn_process(
        self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str, model: str | None
    ) -> bool:
        changed = await self._update(
            "UPDATE turns SET pid = ?, proc_start = ?, out_path = ?, model = COALESCE(?, model), last_event_at = ?"
            " WHERE agent_id = ? AND n = ? AND status = 'running'",
            (pid, proc_start, out_path, model, time.time(), agent_id, n),
        )
        return changed == 1

    async def adopt_turn_process(self, agent_id: str, n: int, *, pid: int, proc_start: float, out_path: str) -> bool:
        """Record the process a running turn's started marker names: the run that really started (runners/started.py),
        when the server that spawned it died before recording it or its own spawn found the turn already started.
        True when the row changed."""
        changed = await self._update(
            "UPDATE turns SET pid = ?, proc_start = ?, out_path = COALESCE(out_path, ?),"
            " last_event_at = COALESCE(last_event_at, ?) WHERE agent_id = ? AND n = ? AND status = 'running'"
            " AND (pid IS NULL OR pid != ?)",
            (pid, proc_start, out_path, time.time(), agent_id, n, pid),
        )
        return changed == 1

    async def restore_agent(self, row: dict[str, Any]) -> None:
        """Insert an agent rebuilt by ``doctor --repair`` (columns of ``agents``; unknown keys are ignored)."""
        cols = [c for c in _AGENT_COLUMNS if c in row]
        await self._update(
            f"INSERT INTO agents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
        )

    async def restore_turn(self, row: dict[str, Any]) -> None:
        """Insert a turn rebuilt from its files by ``doctor --repair`` (columns of ``turns``)."""
        cols = [c for c in _TURN_RESTORE_COLUMNS if c in row]
        await self._update(
            f"INSERT INTO turns ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols]
        )

    async def requeue_turn(self, agent_id: str, n: int) -> None:
        await self._update(
            "UPDATE turns SET status = 'queued', started_at = NULL"
            " WHERE agent_id = ? AND n = ? AND status = 'running' AND pid IS NULL",
            (agent_id, n),
        )

    async def update_turn_stats(self, agent_id: str, n: int, stats: TurnStatsUpdate) -> None:
        await self._update(_STATS_SQL, _stats_params(stats, agent_id, n))

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
        stats: TurnStatsUpdate | None = None,
    ) -> bool:
        """Close a queued/running turn (first closer wins, across processes) and set the agent's status.
        ``ended_at``: when it really ended, if earlier than now (a process that ended while no server was up).
        ``stats``: written first, in the same transaction, whoever wins (``update_turn_stats``)."""
        now = time.time()

        def finish(db: sqlite3.Connection) -> bool:
            if stats is not None:
                db.execute(_STATS_SQL, _stats_params(stats, agent_id, n))
            ok = (
                db.execute(
                    "UPDATE turns SET status = ?, reason = ?, exit_code = ?, result_text = ?, is_error = ?, error = ?,"
                    " ended_at = ? WHERE agent_id = ? AND n = ? AND status IN ('queued', 'running')",
                    (status, reason, exit_code, result_text, is_error, error, ended_at or now, agent_id, n),
                ).rowcount
                == 1
            )
            if ok and agent_status is not None:
                db.execute(
                    "UPDATE agents SET status = ?, last_error = CASE WHEN ? IS NOT NULL THEN ? ELSE last_error END,"
                    " updated_at = ? WHERE id = ? AND status != 'deleted'",
                    (agent_status, error, error, now, agent_id),
                )
            return ok

        return await self._write(finish)


_STATS_SQL = (
    "UPDATE turns SET input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, cache_write_tokens = ?,"
    " cost_usd = ?, context_tokens = ?, tool_calls = ?, activity = ?, last_event_at = ?, reads_json = ?,"
    " writes_json = ?, model = ? WHERE agent_id = ? AND n = ?"
)


def _stats_params(s: TurnStatsUpdate, agent_id: str, n: int) -> tuple[Any, ...]:
    return (s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens, s.cost_usd,
            s.context_tokens, s.tool_calls, s.activity, s.last_event_at, json.dumps(s.reads),
            json.dumps(s.writes), s.model, agent_id, n)  # fmt: skip


# Queued turns that could start: each agent's oldest queued turn, if the agent runs nothing, and only while the cap
# has room -- unless the agent has a parent (a running ancestor's slot may cover it) or is deleted (cancel it).
_EXEMPT_QUEUED_SQL = (  # a queued turn that the cap does not hold back
    "SELECT 1 FROM turns t JOIN agents a ON a.id = t.agent_id WHERE t.status = 'queued'"
    " AND (a.status = 'deleted' OR a.parent_id IS NOT NULL) LIMIT 1"
)
_CANDIDATES_SQL = (
    "SELECT t.agent_id, t.n, a.status AS agent_status, a.parent_id FROM turns t JOIN agents a ON a.id = t.agent_id"
    " WHERE t.status = 'queued'"
    " AND (a.status = 'deleted' OR a.parent_id IS NOT NULL"
    "  OR (SELECT COUNT(*) FROM turns WHERE status = 'running') < ?)"
    " AND t.n = (SELECT MIN(q.n) FROM turns q WHERE q.agent_id = t.agent_id AND q.status = 'queued')"
    " AND NOT EXISTS (SELECT 1 FROM turns r WHERE r.agent_id = t.agent_id AND r.status = 'running')"
    " ORDER BY t.queued_at, t.agent_id, t.n"
)


def _claim(db: sqlite3.Connection, agent_id: str, n: int, *, max_running: int, claimer: str | None, now: float) -> bool:
    """``claim_turn``'s conditional UPDATE, inside the caller's ``BEGIN IMMEDIATE``."""
    ok = (
        db.execute(
            "UPDATE turns SET status = 'running', started_at = ?, claimed_by = ? WHERE agent_id = ? AND n = ?"
            " AND status = 'queued'"
            " AND NOT EXISTS (SELECT 1 FROM turns WHERE agent_id = ? AND status = 'running')"
            " AND ((SELECT COUNT(*) FROM turns WHERE status = 'running') < ?"
            "  OR EXISTS (WITH RECURSIVE anc(id) AS ("
            "   SELECT parent_id FROM agents WHERE id = ? AND parent_id IS NOT NULL"
            "   UNION SELECT a.parent_id FROM agents a JOIN anc ON a.id = anc.id WHERE a.parent_id IS NOT NULL)"
            "   SELECT 1 FROM turns t JOIN anc ON t.agent_id = anc.id WHERE t.status = 'running'))",
            (now, claimer, agent_id, n, agent_id, max_running, agent_id),
        ).rowcount
        == 1
    )
    if ok:
        db.execute(
            "UPDATE agents SET status = 'running', updated_at = ? WHERE id = ? AND status != 'deleted'", (now, agent_id)
        )
    return ok


_conforms: type[Store] = SqliteStore  # pyright checks here that SqliteStore implements the Store protocol
