"""The SQLite store's usage totals, batches and runs (the rest of ``SqliteStore``: sqlite.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from agent_fleet_mcp.errors import AlreadyExists
from agent_fleet_mcp.store.models import (
    AgentTotals,
    BatchRow,
    BatchStatus,
    OpenRun,
    RunEnd,
    RunRow,
    RunSpec,
    TurnUsage,
)
from agent_fleet_mcp.store.sqlite_base import POINT_READ_MAX_IDS, SqliteConnection


class SqliteUsageAndBatches(SqliteConnection):
    async def agent_totals(self, agent_ids: Sequence[str]) -> dict[str, AgentTotals]:
        """Per agent: turn count, token sums, cost sum (None when no turn is priced), tool calls."""
        if not agent_ids:
            return {}
        marks = ",".join("?" * len(agent_ids))
        read = self._point if len(agent_ids) <= POINT_READ_MAX_IDS else self._all
        rows = await read(
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

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO batches (id, created_at, status, idempotency_key, request_hash, budget_usd)"
                    " VALUES (?, ?, 'running', ?, ?, ?)",
                    (batch_id, now, idempotency_key, request_hash, budget_usd),
                )
            except sqlite3.IntegrityError:
                if (
                    idempotency_key is not None
                    and db.execute("SELECT 1 FROM batches WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
                ):
                    raise AlreadyExists("idempotency_key", idempotency_key, holder="a batch") from None
                raise AlreadyExists("id", batch_id, holder="a batch") from None
            db.executemany(
                "INSERT INTO runs (batch_id, run_id, seq, template, input, depends_on_json, cwd, status,"
                " isolation) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?)",
                [(batch_id, run.run_id, seq, run.template, run.input, json.dumps(run.depends_on), run.cwd,
                  run.isolation) for seq, run in enumerate(runs)],
            )  # fmt: skip

        await self._write(insert)

    async def find_batch_by_key(self, idempotency_key: str) -> BatchRow | None:
        r = await self._one("SELECT * FROM batches WHERE idempotency_key = ?", (idempotency_key,))
        return BatchRow.from_row(r) if r else None

    async def get_batch(self, batch_id: str) -> BatchRow | None:
        rows = await self._point("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return BatchRow.from_row(rows[0]) if rows else None

    async def list_batches(self, *, status: BatchStatus | None = None) -> list[BatchRow]:
        if status is None:
            rows = await self._all("SELECT * FROM batches ORDER BY created_at")
        else:
            rows = await self._all("SELECT * FROM batches WHERE status = ? ORDER BY created_at", (status,))
        return [BatchRow.from_row(r) for r in rows]

    async def open_runs(self, batch_id: str) -> list[OpenRun]:
        rows = await self._point(
            "SELECT r.run_id, r.status, t.status AS turn_status, r.depends_on_json, r.agent_id FROM runs r"
            " LEFT JOIN turns t ON t.agent_id = r.agent_id AND t.n = 1"
            " WHERE r.batch_id = ? AND r.status IN ('waiting', 'running')",
            (batch_id,),
        )
        return [
            OpenRun(r["run_id"], r["status"], r["turn_status"], tuple(json.loads(r["depends_on_json"] or "[]")),
                    r["agent_id"])
            for r in rows
        ]

    async def batch_agent_names(self, batch_id: str) -> dict[str, str]:
        rows = await self._all("SELECT id, name FROM agents WHERE batch_id = ?", (batch_id,))
        return {r["id"]: r["name"] for r in rows}

    async def runs_of(self, batch_id: str) -> list[RunRow]:
        rows = await self._point("SELECT * FROM runs WHERE batch_id = ? ORDER BY seq", (batch_id,))
        return [RunRow.from_row(r) for r in rows]

    async def start_run(self, batch_id: str, run_id: str, *, agent_id: str) -> bool:
        """waiting -> running with the agent created for it; True when this call moved it."""
        changed = await self._update(
            "UPDATE runs SET status = 'running', agent_id = ?, started_at = ?"
            " WHERE batch_id = ? AND run_id = ? AND status = 'waiting'",
            (agent_id, time.time(), batch_id, run_id),
        )
        return changed == 1

    async def finish_run(self, batch_id: str, run_id: str, *, status: RunEnd, reason: str | None = None) -> bool:
        """Close a waiting or running run; the first closer wins (True), later calls change nothing."""
        changed = await self._update(
            "UPDATE runs SET status = ?, reason = ?, ended_at = ?"
            " WHERE batch_id = ? AND run_id = ? AND status IN ('waiting', 'running')",
            (status, reason, time.time(), batch_id, run_id),
        )
        return changed == 1

    async def finish_batch(self, batch_id: str, status: BatchStatus) -> None:
        await self._update(
            "UPDATE batches SET status = ?, ended_at = ? WHERE id = ? AND status = 'running'",
            (status, time.time(), batch_id),
        )
