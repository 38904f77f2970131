"""Every statement the store runs on the status and dispatch paths finds its rows through an index: no full scan
of ``agents``, ``turns`` or ``runs`` (checked with ``EXPLAIN QUERY PLAN`` on the statements the store really ran,
captured with their bound values)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

# Statements that read every row by design (the CLI's full listings), by their start.
WHOLE_TABLE = ("SELECT * FROM agents WHERE status != 'deleted' OR", "SELECT * FROM batches ORDER BY")


def full_scans(db: Path, statements: list[str]) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    out: list[tuple[str, str]] = []
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")) or sql.startswith(WHOLE_TABLE):
            continue
        for row in con.execute("EXPLAIN QUERY PLAN " + sql):
            detail = str(row[-1])
            if detail.startswith("SCAN") and " USING " not in detail and detail.split()[1] in ("agents", "turns",
                                                                                               "runs", "a", "t", "q",
                                                                                               "r"):  # fmt: skip
                out.append((sql[:200], detail))
    con.close()
    return out


async def test_status_and_dispatch_statements_use_indexes(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    async with SqliteStore(db) as store:
        for i in range(30):
            await store.insert_agent(id=f"a{i}", name=f"n{i}", spec=AgentSpec(), spec_hash="h", cwd="/",
                                     idempotency_key=None, parent_id="a0" if i == 5 else None)  # fmt: skip
            await store.insert_turn(agent_id=f"a{i}", prompt="p", runner="command", model=None)
        seen: list[str] = []
        await store.db.set_trace_callback(seen.append)
        reader = store._point_reader()  # pyright: ignore[reportPrivateUsage] (point reads: the event loop's thread)
        assert reader is not None
        reader.set_trace_callback(seen.append)
        claimed = await store.claim_queued(max_running=3, claimer="me")
        await store.claim_queued(max_running=3)  # the cap is full
        await store.get_agent("n7")
        await store.get_agent("n7", include_deleted=True)
        await store.get_agent("a7")
        await store.find_by_idempotency_key("k")
        await store.latest_turns(["a1", "a2"])
        await store.first_turns(["a1", "a2"])
        await store.first_turns([f"a{i}" for i in range(30)] * 3)  # more ids than a point read takes
        await store.batch_agent_names("b")
        await store.open_runs("b")
        await store.agent_totals(["a1", "a2"])
        await store.status_agents(limit=20)
        await store.spend_since(0.0)
        await store.batch_spend("b")
        await store.list_batches(status="running")
        await store.count_turns("a1", "succeeded", "failed")
        await store.finish_turn(claimed[0].agent_id, claimed[0].n, status="succeeded", agent_status="idle")
        await store.purge_agent("a9")
    assert len(claimed) == 4  # three under the cap, and a5 under its running parent a0
    assert len(seen) > 15
    assert full_scans(db, seen) == []
