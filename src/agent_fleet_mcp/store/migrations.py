"""Append-only, named schema migrations. Never edit a shipped one: add the next.

Each migration is a list of SQL statements applied in one transaction and recorded in ``migrations``.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_initial",
        [
            """CREATE TABLE agents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                spec_json TEXT NOT NULL,
                spec_hash TEXT NOT NULL,
                cwd TEXT NOT NULL,
                idempotency_key TEXT,
                session_id TEXT,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                deleted_at REAL
            )""",
            "CREATE UNIQUE INDEX agents_live_name ON agents(name) WHERE status != 'deleted'",
            "CREATE INDEX agents_idem ON agents(idempotency_key) WHERE idempotency_key IS NOT NULL",
            """CREATE TABLE turns (
                agent_id TEXT NOT NULL REFERENCES agents(id),
                n INTEGER NOT NULL,
                status TEXT NOT NULL,
                reason TEXT,
                prompt TEXT NOT NULL,
                runner TEXT NOT NULL,
                model TEXT,
                pid INTEGER,
                proc_start REAL,
                out_path TEXT,
                queued_at REAL NOT NULL,
                started_at REAL,
                ended_at REAL,
                exit_code INTEGER,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cache_read_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd REAL,
                context_tokens INTEGER,
                tool_calls INTEGER NOT NULL DEFAULT 0,
                activity TEXT,
                last_event_at REAL,
                reads_json TEXT NOT NULL DEFAULT '[]',
                writes_json TEXT NOT NULL DEFAULT '[]',
                result_text TEXT,
                is_error INTEGER,
                error TEXT,
                PRIMARY KEY (agent_id, n)
            )""",
            "CREATE INDEX turns_status ON turns(status, queued_at)",
            """CREATE TABLE batches (
                id TEXT PRIMARY KEY,
                created_at REAL NOT NULL,
                ended_at REAL,
                status TEXT NOT NULL
            )""",
            """CREATE TABLE runs (
                batch_id TEXT NOT NULL REFERENCES batches(id),
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                template TEXT NOT NULL,
                input TEXT NOT NULL,
                depends_on_json TEXT NOT NULL DEFAULT '[]',
                cwd TEXT NOT NULL,
                agent_id TEXT,
                status TEXT NOT NULL,
                reason TEXT,
                started_at REAL,
                ended_at REAL,
                PRIMARY KEY (batch_id, run_id)
            )""",
        ],
    ),
    (
        "0002_batch_idempotency",
        [
            "ALTER TABLE batches ADD COLUMN idempotency_key TEXT",
            "ALTER TABLE batches ADD COLUMN request_hash TEXT",
            "CREATE UNIQUE INDEX batches_idem ON batches(idempotency_key) WHERE idempotency_key IS NOT NULL",
        ],
    ),
    (
        "0003_budgets_trees_atomic_idempotency",
        [
            # Delegation trees: who created an agent (an agent's turn running a nested server), its tree's root and
            # its depth (1 = created by a host). The batch a run_agents agent belongs to (for the batch budget).
            "ALTER TABLE agents ADD COLUMN parent_id TEXT",
            "ALTER TABLE agents ADD COLUMN root_id TEXT",
            "ALTER TABLE agents ADD COLUMN depth INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE agents ADD COLUMN batch_id TEXT",
            "UPDATE agents SET root_id = id WHERE root_id IS NULL",
            "CREATE INDEX agents_root ON agents(root_id)",
            "CREATE INDEX agents_batch ON agents(batch_id) WHERE batch_id IS NOT NULL",
            "ALTER TABLE batches ADD COLUMN budget_usd REAL",
            # One live agent per idempotency key, enforced by the database across servers. Duplicates made before
            # this constraint existed keep their agent; only the oldest keeps the key.
            "UPDATE agents SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND status != 'deleted'"
            " AND id != (SELECT a2.id FROM agents a2 WHERE a2.idempotency_key = agents.idempotency_key"
            " AND a2.status != 'deleted' ORDER BY a2.created_at, a2.id LIMIT 1)",
            "DROP INDEX agents_idem",
            "CREATE UNIQUE INDEX agents_live_idem ON agents(idempotency_key)"
            " WHERE idempotency_key IS NOT NULL AND status != 'deleted'",
            "CREATE INDEX turns_started ON turns(started_at)",
        ],
    ),
    (
        "0004_turn_claims",
        # who claimed a running turn (``pid@create_time`` of the server): a claim whose server died before it
        # recorded the turn's pid is recovered at once (runners/started.py), not after a timeout
        ["ALTER TABLE turns ADD COLUMN claimed_by TEXT"],
    ),
    (
        "0005_indexes",
        # an index for every lookup path (checked with EXPLAIN QUERY PLAN, tests/core/test_store_indexes.py):
        # status by agent status and recency, a name among deleted agents too, the fleet budget's day, a deleted
        # agent's runs, the running batches
        [
            "CREATE INDEX agents_status ON agents(status, updated_at)",
            "CREATE INDEX agents_name ON agents(name, created_at)",
            "CREATE INDEX turns_day ON turns(COALESCE(started_at, queued_at))",
            "CREATE INDEX runs_agent ON runs(agent_id) WHERE agent_id IS NOT NULL",
            "CREATE INDEX batches_status ON batches(status, created_at)",
        ],
    ),
    (
        "0006_worktrees",
        # issue 11: a readwrite agent's git worktree (worktrees.Workspace as JSON; NULL = it edits its cwd in
        # place), its changes against its base as of its last turn's commit (worktrees.Changes as JSON), and when
        # merge_agent last merged them into the user's checkout; the isolation a run_agents run asked for
        [
            "ALTER TABLE agents ADD COLUMN workspace_json TEXT",
            "ALTER TABLE agents ADD COLUMN changes_json TEXT",
            "ALTER TABLE agents ADD COLUMN merged_at REAL",
            "ALTER TABLE runs ADD COLUMN isolation TEXT",
        ],
    ),
]
