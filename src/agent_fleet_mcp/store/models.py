"""Rows as the store returns them: plain frozen dataclasses, no SQL here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent_fleet_mcp.spec import AgentSpec

AGENT_STATUSES = ("queued", "running", "idle", "failed", "stopped", "deleted")
TURN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "lost")
TURN_DONE = frozenset(("succeeded", "failed", "cancelled", "lost"))
RUN_STATUSES = ("waiting", "running", "succeeded", "failed", "skipped")
RUN_DONE = frozenset(("succeeded", "failed", "skipped"))


@dataclass(frozen=True)
class AgentRow:
    id: str
    name: str
    status: str
    spec: AgentSpec
    spec_hash: str
    cwd: str
    idempotency_key: str | None
    session_id: str | None
    last_error: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None
    parent_id: str | None = None  # the agent whose turn created this one (through a nested server)
    root_id: str | None = None  # the first agent of its delegation tree (itself when a host created it)
    depth: int = 1  # 1 = created by a host; a child of a depth-d agent has depth d + 1
    batch_id: str | None = None  # the run_agents batch it was created for

    @classmethod
    def from_row(cls, r: Any) -> AgentRow:
        keys = r.keys()
        return cls(
            id=r["id"],
            name=r["name"],
            status=r["status"],
            spec=AgentSpec.model_validate_json(r["spec_json"]),
            spec_hash=r["spec_hash"],
            cwd=r["cwd"],
            idempotency_key=r["idempotency_key"],
            session_id=r["session_id"],
            last_error=r["last_error"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            deleted_at=r["deleted_at"],
            parent_id=r["parent_id"] if "parent_id" in keys else None,
            root_id=r["root_id"] if "root_id" in keys else None,
            depth=int(r["depth"]) if "depth" in keys else 1,
            batch_id=r["batch_id"] if "batch_id" in keys else None,
        )


@dataclass(frozen=True)
class TurnRow:
    agent_id: str
    n: int
    status: str
    reason: str | None
    prompt: str
    runner: str
    model: str | None
    pid: int | None
    proc_start: float | None
    out_path: str | None
    queued_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    context_tokens: int | None
    tool_calls: int
    activity: str | None
    last_event_at: float | None
    reads: list[str]
    writes: list[str]
    result_text: str | None
    is_error: bool | None
    error: str | None
    claimed_by: str | None = None  # the server that claimed the turn (pid@create_time), see runners/started.py

    @property
    def done(self) -> bool:
        return self.status in TURN_DONE

    @classmethod
    def from_row(cls, r: Any) -> TurnRow:
        d = dict(r)
        d["reads"] = json.loads(d.pop("reads_json") or "[]")
        d["writes"] = json.loads(d.pop("writes_json") or "[]")
        d["is_error"] = None if d["is_error"] is None else bool(d["is_error"])
        return cls(**d)


@dataclass(frozen=True)
class RunRow:
    batch_id: str
    run_id: str
    seq: int
    template: str
    input: str
    depends_on: list[str]
    cwd: str
    agent_id: str | None
    status: str
    reason: str | None
    started_at: float | None
    ended_at: float | None

    @classmethod
    def from_row(cls, r: Any) -> RunRow:
        d = dict(r)
        d["depends_on"] = json.loads(d.pop("depends_on_json") or "[]")
        return cls(**d)


@dataclass(frozen=True)
class BatchRow:
    id: str
    created_at: float
    ended_at: float | None
    status: str
    idempotency_key: str | None = None
    request_hash: str | None = None
    budget_usd: float | None = None

    @classmethod
    def from_row(cls, r: Any) -> BatchRow:
        return cls(**dict(r))
