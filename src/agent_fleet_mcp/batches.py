"""run_agents: a batch of delegated runs with `depends_on` edges, started wave by wave.

Validation happens before anything starts (unknown template, duplicate id, unknown dependency, cycle, a `{{id}}`
that is not a dependency). A run starts when all its dependencies succeeded; `{{id}}` in its input is replaced by
that run's result (capped). A failed dependency fails its dependents with a reason. State lives in the store, so
a batch keeps advancing under whichever server is up.

The engine reads and writes runs through the ``Store`` protocol and creates agents through a ``BatchHost`` (the
``Fleet``); it does not import fleet.py (fleet.py imports this module and owns the engine).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from agent_fleet_mcp.catalog import Catalog
from agent_fleet_mcp.errors import AlreadyExists, Conflict, FleetError, InvalidRequest
from agent_fleet_mcp.inputs import quote
from agent_fleet_mcp.spec import ISOLATIONS
from agent_fleet_mcp.store.models import RUN_DONE, AgentRow, OpenRun, RunRow, RunSpec
from agent_fleet_mcp.store.protocol import Store

log = structlog.get_logger("agent_fleet.batches")

REF_RE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")
RESULT_IN_INPUT_CHARS = 8_000
MAX_RUNS = 50


@dataclass(frozen=True)
class RunRequest:
    template: str
    input: str
    id: str | None = None
    depends_on: tuple[str, ...] = ()
    cwd: str | None = None
    isolation: str | None = None  # worktree | none | None (automatic); see isolation.py


def waves(deps: dict[str, list[str]]) -> dict[str, int]:
    """Wave number (1-based) of each run: 1 + the deepest dependency. Assumes an acyclic graph."""
    out: dict[str, int] = {}

    def depth(rid: str) -> int:
        if rid not in out:
            out[rid] = 1 + max((depth(d) for d in deps[rid]), default=0)
        return out[rid]

    for rid in deps:
        depth(rid)
    return out


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in deps[n]:
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (cyc := visit(d)):
                return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in deps:
        if n not in state and (cyc := visit(n)):
            return cyc
    return None


class Created(Protocol):
    """What ``create_agent`` returns, as far as the engine cares (``fleet.CreateResult``)."""

    @property
    def agent(self) -> AgentRow: ...


class BatchHost(Protocol):
    """What the engine needs from the fleet (``Fleet`` is one): validation and creating a run's agent."""

    def catalog(self) -> Catalog: ...

    def validate_prompt(self, prompt: str) -> None: ...

    def validate_cwd(self, cwd: str | None) -> str: ...

    def check_depth(self) -> None: ...

    async def create_agent(
        self, *, name: str, template: str, prompt: str, cwd: str, batch_id: str, isolation: str | None = None,
        start_from: str | None = None,
    ) -> Created: ...  # fmt: skip


class BatchEngine:
    def __init__(self, store: Store, host: BatchHost) -> None:
        self.store = store
        self.host = host
        # One advance at a time per batch (two would start a run twice: the second create_agent of its name fails
        # and marks the run failed); different batches advance side by side: with one lock for all, four
        # run_agents calls of 50 started their waves one after another (the last 4.5 s after the first).
        self._locks: dict[str, anyio.Lock] = {}

    def validate(self, runs: Sequence[RunRequest]) -> list[RunSpec]:
        if not runs:
            raise InvalidRequest("runs is empty; pass at least one {agent, input}")
        if len(runs) > MAX_RUNS:
            raise InvalidRequest(f"{len(runs)} runs in one batch (limit {MAX_RUNS}); split the work")
        catalog = self.host.catalog()
        ids: list[str] = []
        counts: dict[str, int] = {}
        for r in runs:
            catalog.get(r.template)  # unknown template -> NotFound with the available names
            if r.id is not None:
                rid = r.id
            else:
                counts[r.template] = counts.get(r.template, 0) + 1
                rid = r.template if counts[r.template] == 1 else f"{r.template}-{counts[r.template]}"
            if not ID_RE.match(rid):
                raise InvalidRequest(f"bad run id {quote(rid)}: use letters, digits, '-', '_' or '.' (max 41)")
            if rid in ids:
                raise InvalidRequest(f"duplicate run id {rid!r}; give each run a distinct `id`")
            ids.append(rid)
        deps = {rid: list(dict.fromkeys(r.depends_on)) for rid, r in zip(ids, runs, strict=True)}
        for rid, r in zip(ids, runs, strict=True):
            for d in deps[rid]:
                if d not in deps:
                    raise InvalidRequest(f"run {rid!r} depends on unknown run {d!r}; known ids: {', '.join(ids)}")
                if d == rid:
                    raise InvalidRequest(f"run {rid!r} depends on itself")
            for ref in REF_RE.findall(r.input):
                if ref not in deps[rid]:
                    raise InvalidRequest(
                        f"input of run {rid!r} uses {{{{{ref}}}}} but does not depend on it; add {ref!r} to depends_on"
                    )
            self.host.validate_prompt(r.input)
        if cycle := find_cycle(deps):
            raise InvalidRequest(f"depends_on has a cycle: {' -> '.join(cycle)}; runs must form a DAG")
        return [
            RunSpec(run_id=rid, template=r.template, input=r.input, depends_on=deps[rid],
                    cwd=self.host.validate_cwd(r.cwd), isolation=_isolation(rid, r.isolation))
            for rid, r in zip(ids, runs, strict=True)
        ]  # fmt: skip

    async def start(
        self, runs: Sequence[RunRequest], *, idempotency_key: str | None = None, budget_usd: float | None = None
    ) -> str:
        """Validate and start a batch; returns its id. With an idempotency key, a retry of the same request
        returns the batch already started (a different request under the same key is a Conflict). ``budget_usd``
        bounds the cost of all the batch's runs together: once spent, running ones are stopped and waiting ones
        fail, each with the reason ``batch_budget``."""
        self.host.check_depth()
        rows = self.validate(runs)
        if budget_usd is not None and not (0 < budget_usd < float("inf")):
            raise InvalidRequest(f"budget_usd must be a number greater than 0, got {budget_usd!r}")
        # the same JSON as before RunSpec existed (isolation only when asked for): stored hashes stay valid
        plain = [{k: v for k, v in asdict(r).items() if k != "isolation" or v is not None} for r in rows]
        hashed: object = plain if budget_usd is None else {"runs": plain, "budget_usd": budget_usd}
        request_hash = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:32]
        if idempotency_key is not None:
            existing = await self.store.find_batch_by_key(idempotency_key)
            if existing is not None:
                if existing.request_hash != request_hash:
                    raise Conflict(
                        f"idempotency_key {idempotency_key!r} was already used for batch {existing.id} with different "
                        "runs; use a new key, or wait_for_agents(batch=...) on that batch"
                    )
                return existing.id
        batch_id = "b_" + uuid.uuid4().hex[:8]
        try:
            await self.store.insert_batch(
                batch_id, rows, idempotency_key=idempotency_key, request_hash=request_hash, budget_usd=budget_usd
            )
        except AlreadyExists:  # a concurrent retry with the same key won
            if idempotency_key is not None and (again := await self.store.find_batch_by_key(idempotency_key)):
                return again.id
            raise
        log.info("batch_started", batch=batch_id, runs=len(rows))
        await self.advance(batch_id)
        return batch_id

    async def advance(self, batch_id: str | None = None) -> list[OpenRun] | None:
        """Move the batch (every running batch when None) as far as it goes. For one named batch, returns its open
        runs as read by the last pass, which changed nothing after reading them (a wait's look needs no read of its
        own: a look comes with every change of the fleet, and three reads of every open run per look were a tenth
        of the server's CPU with 200 runs in 4 batches)."""
        store = self.store
        ids = [batch_id] if batch_id else [b.id for b in await store.list_batches(status="running")]
        open_runs: list[OpenRun] = []
        for bid in ids:
            async with self._locks.setdefault(bid, anyio.Lock()):
                changed = True
                while changed:
                    changed, open_runs = await self._advance_once(bid)
                if open_runs:
                    continue
                runs = await store.runs_of(bid)
                if runs and all(r.status in RUN_DONE for r in runs):
                    ok = all(r.status == "succeeded" for r in runs)
                    await store.finish_batch(bid, "succeeded" if ok else "failed")
                    self._locks.pop(bid, None)  # over: a late advance of it finds nothing to start
        return open_runs if batch_id else None

    async def _advance_once(self, batch_id: str) -> tuple[bool, list[OpenRun]]:
        """One pass over the batch: whether something changed (so another pass may unlock more), and the open runs
        read at its start. While every open run is running and no turn of theirs ended, one narrow read says so
        and nothing else is read (a batch is looked at on every change of the fleet: 200 runs made ~300 passes)."""
        store = self.store
        open_runs = await store.open_runs(batch_id)
        still_open = {r.run_id for r in open_runs}
        if not any(r.ended or (r.status == "waiting" and _any_closed(r.depends_on, still_open)) for r in open_runs):
            return False, open_runs  # nothing ended, and every waiting run waits on open runs only
        runs = await store.runs_of(batch_id)
        by_id = {r.run_id: r for r in runs}
        changed = False
        ready: list[RunRow] = []
        firsts = await store.first_turns([r.agent_id for r in runs if r.status == "running" and r.agent_id])
        for run in runs:
            if run.status == "running":
                turn = firsts.get(run.agent_id) if run.agent_id else None  # none: the agent was purged
                if turn is None or turn.done:
                    ok = turn is not None and turn.status == "succeeded"
                    reason = None if ok else (turn.error or turn.reason or turn.status if turn else "agent deleted")
                    await store.finish_run(batch_id, run.run_id, status="succeeded" if ok else "failed", reason=reason)
                    changed = True
            elif run.status == "waiting":
                dep_rows = [by_id[d] for d in run.depends_on]
                bad = next((d for d in dep_rows if d.status == "failed"), None)
                if bad is not None:
                    await store.finish_run(
                        batch_id, run.run_id, status="failed",
                        reason=f"dependency {bad.run_id!r} failed: {bad.reason or 'no reason'}",
                    )  # fmt: skip
                    changed = True
                elif all(d.status == "succeeded" for d in dep_rows):
                    ready.append(run)
        if ready:  # a wave's runs start side by side: each create_agent waits for its turn to be spawned
            async with anyio.create_task_group() as tg:
                for run in ready:
                    tg.start_soon(self._start_run, batch_id, run, by_id)
            changed = True
        return changed, open_runs

    async def _start_run(self, batch_id: str, run: RunRow, by_id: dict[str, RunRow]) -> None:
        store = self.store
        results: dict[str, str] = {}
        firsts = await store.first_turns([a for d in run.depends_on if (a := by_id[d].agent_id)])
        for d in run.depends_on:
            dep = by_id[d]
            turn = firsts.get(dep.agent_id) if dep.agent_id else None
            results[d] = cap_result((turn.result_text if turn else None) or "", dep)
        prompt = REF_RE.sub(lambda m: results.get(m.group(1), m.group(0)), run.input)
        name = f"{run.run_id}-{batch_id[2:]}"
        start_from = await self._chained_branch(run, by_id)
        try:
            created = await self.host.create_agent(
                name=name, template=run.template, prompt=prompt, cwd=run.cwd, batch_id=batch_id,
                isolation=run.isolation, start_from=start_from,
            )  # fmt: skip
        except FleetError as exc:
            await store.finish_run(batch_id, run.run_id, status="failed", reason=str(exc))
            return
        await store.start_run(batch_id, run.run_id, agent_id=created.agent.id)

    async def _chained_branch(self, run: RunRow, by_id: dict[str, RunRow]) -> str | None:
        """The branch a run's worktree starts from: that of its first dependency that worked in a worktree of the
        same repository (its edits carry on), else None (the checkout as it is). Ignored when the run's agent gets
        no worktree (a readonly one)."""
        for d in run.depends_on:
            agent_id = by_id[d].agent_id
            dep = await self.store.get_agent(agent_id, include_deleted=True) if agent_id else None
            if dep is not None and dep.workspace is not None and Path(run.cwd).is_relative_to(dep.workspace.repo):
                return dep.workspace.branch
        return None


def _any_closed(depends_on: tuple[str, ...], still_open: set[str]) -> bool:
    """A waiting run with something to decide: no dependencies, or one of them done (succeeded: it may start;
    failed: it fails)."""
    return not depends_on or not still_open.issuperset(depends_on)


def _isolation(run_id: str, value: str | None) -> str | None:
    if value is not None and value not in ISOLATIONS:
        raise InvalidRequest(f"run {run_id!r}: isolation must be one of {', '.join(ISOLATIONS)} (or left out), got "
                             f"{value!r}")  # fmt: skip
    return value


def cap_result(text: str, dep: RunRow) -> str:
    if len(text) <= RESULT_IN_INPUT_CHARS:
        return text
    return (
        text[:RESULT_IN_INPUT_CHARS]
        + f"\n[... {len(text) - RESULT_IN_INPUT_CHARS:,} more chars; read them with get_agent_output on the agent of"
        f" run {dep.run_id!r}]"
    )
