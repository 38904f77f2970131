"""The supervisor: agents and turns, the concurrency strategies, the global capacity, waits and restart
reconciliation. It knows the Store and the Runner protocol, and spawns/kills only through runners/process.py.

Life of a turn: ``queued`` (inserted) -> ``running`` (claimed atomically under the fleet-wide cap, process
spawned, followed by a follower task that folds its transcript into the store) -> ``succeeded | failed |
cancelled | lost``. Intentional stops (delete, replace, timeout, budget) write the final status *before* killing,
so whichever follower sees the death afterwards changes nothing. Every server sharing a fleet home follows every
running turn (idempotent), so a turn is never left ``running`` while some server is up.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import structlog

from agent_fleet_mcp import catalog as catalog_mod
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import Conflict, InvalidRequest, NotFound
from agent_fleet_mcp.permissions import check_readonly
from agent_fleet_mcp.private import private_dirs
from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners.base import Runner, TurnRequest
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.models import AgentRow, TurnRow
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.tracking import TurnStats
from agent_fleet_mcp.transcript import TranscriptReader

log = structlog.get_logger("agent_fleet.fleet")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PROMPT_CHARS = 200_000
STATS_FLUSH_S = 0.5
ORPHAN_CLAIM_S = 30.0  # a claimed turn with no process after this long was claimed by a server that died
TICK_S = 1.0

ProgressFn = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class CreateResult:
    agent: AgentRow
    created: bool
    turn: TurnRow | None


def spec_fingerprint(spec: AgentSpec, cwd: str, prompt: str | None) -> str:
    payload = json.dumps({"spec": spec.model_dump(mode="json"), "cwd": cwd, "prompt": prompt}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Fleet:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        *,
        runner_for: Callable[[str], Runner] = get_runner,
    ) -> None:
        self.settings = settings
        self.store = store
        self._runner_for = runner_for
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()
        self._dispatch_lock = anyio.Lock()
        self._followed: set[tuple[str, int]] = set()
        from agent_fleet_mcp.batches import BatchEngine  # local: batches imports Fleet types

        self.batches = BatchEngine(self)

    # -- lifecycle -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Fleet]:
        """Run the supervisor (scheduler, followers) for the duration of the block. Agent processes are detached:
        leaving the block stops following them, it does not kill them."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self.reconcile()
            tg.start_soon(self._ticker)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
                self._tg = None

    async def reconcile(self) -> None:
        """Adopt running turns (follow them; dead ones are closed from their transcript) and start queued ones."""
        now = time.time()
        for turn in await self.store.turns_with_status("running"):
            if turn.pid is None:
                if now - (turn.started_at or now) > ORPHAN_CLAIM_S:
                    await self.store.requeue_turn(turn.agent_id, turn.n)
                continue
            self._start_follower(turn.agent_id, turn.n)
        await self.batches.advance()
        await self.dispatch()

    async def _ticker(self) -> None:
        """Periodic pass for what other processes sharing the home may have changed."""
        while True:
            with anyio.move_on_after(TICK_S):
                await self._changed.wait()
            try:
                for turn in await self.store.turns_with_status("running"):
                    if turn.pid is not None:
                        self._start_follower(turn.agent_id, turn.n)
                await self.batches.advance()
                await self.dispatch()
            except Exception:  # keep the supervisor alive; the next tick retries
                log.exception("tick_failed")

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self, within_s: float) -> None:
        """Return when something changed in this process, or after ``within_s`` (other processes are polled)."""
        with anyio.move_on_after(within_s):
            await self._changed.wait()

    # -- paths -----------------------------------------------------------------------------------------------
    def agent_dir(self, agent_id: str) -> Path:
        return self.settings.agents_dir / agent_id

    def turn_files(self, agent_id: str, n: int) -> proc.TurnFiles:
        return proc.TurnFiles.for_turn(self.agent_dir(agent_id) / "turns", n)

    # -- lookups ---------------------------------------------------------------------------------------------
    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow:
        """A live agent by name or id; with include_deleted, else the newest deleted one of that name (its
        transcripts stay readable until a purge)."""
        agent = await self.store.get_agent(ref, include_deleted=include_deleted)
        if agent is None:
            live = [a.name for a in await self.store.list_agents()]
            hint = f"live agents: {', '.join(live[:20])}" if live else "the fleet is empty; create_agent first"
            raise NotFound(f"no agent named {ref!r} ({hint})")
        return agent

    def runner(self, name: str) -> Runner:
        return self._runner_for(name)

    def catalog(self) -> catalog_mod.Catalog:
        return catalog_mod.load_catalog(self.settings.project_dir, self.settings.env)

    # -- create / command ------------------------------------------------------------------------------------
    def resolve_spec(
        self,
        *,
        template: str | None,
        runner: str | None,
        model: str | None,
        system_prompt: str | None,
        permission: str | None,
        max_turns: int | None,
        max_cost_usd: float | None,
        timeout_s: float | None,
        cwd: str,
    ) -> AgentSpec:
        if template:
            base = self.catalog().get(template).spec
        else:
            base = AgentSpec(runner="anthropic")
        if runner is not None:
            self._runner_for(runner)  # unknown runner -> clear error
            if runner == "command" and base.runner != "command":
                raise InvalidRequest(
                    "runner 'command' only comes from catalog definitions (argv is never taken from tool "
                    "arguments); pass template=<a command definition> instead"
                )
        overrides: dict[str, object] = {"cwd": cwd}
        for key, value in (
            ("runner", runner), ("model", model), ("system_prompt", system_prompt), ("permission", permission),
            ("max_turns", max_turns), ("max_cost_usd", max_cost_usd), ("timeout_s", timeout_s),
        ):  # fmt: skip
            if value is not None:
                overrides[key] = value
        try:
            spec = AgentSpec.model_validate({**base.model_dump(), **overrides})
        except ValueError as exc:
            raise InvalidRequest(f"invalid agent settings: {exc}") from None
        check_readonly(spec)  # e.g. permission="readonly" over a template whose tools include bash
        return spec

    def validate_cwd(self, cwd: str | None) -> str:
        path = Path(cwd).expanduser() if cwd else self.settings.project_dir
        if not path.is_absolute():
            path = self.settings.project_dir / path
        if not path.exists():
            raise InvalidRequest(f"cwd {str(path)!r} does not exist; pass an existing directory (absolute path)")
        if not path.is_dir():
            raise InvalidRequest(f"cwd {str(path)!r} is not a directory; pass the folder the agent should work in")
        return str(path.resolve())

    @staticmethod
    def validate_name(name: str) -> None:
        if not NAME_RE.match(name):
            raise InvalidRequest(
                f"bad agent name {name!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )

    @staticmethod
    def validate_prompt(prompt: str) -> None:
        if not prompt.strip():
            raise InvalidRequest("prompt is empty; say what the agent should do")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(
                f"prompt is {len(prompt):,} chars (limit {MAX_PROMPT_CHARS:,}); put large context in a file in the "
                "agent's cwd and tell the agent to read it"
            )

    async def create_agent(
        self,
        *,
        name: str,
        prompt: str | None = None,
        template: str | None = None,
        runner: str | None = None,
        model: str | None = None,
        system_prompt: str | None = None,
        cwd: str | None = None,
        permission: str | None = None,
        max_turns: int | None = None,
        max_cost_usd: float | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        self.validate_name(name)
        if prompt is not None:
            self.validate_prompt(prompt)
        real_cwd = self.validate_cwd(cwd)
        spec = self.resolve_spec(
            template=template, runner=runner, model=model, system_prompt=system_prompt, permission=permission,
            max_turns=max_turns, max_cost_usd=max_cost_usd, timeout_s=timeout_s, cwd=real_cwd,
        )  # fmt: skip
        fingerprint = spec_fingerprint(spec, real_cwd, prompt)
        existing = await self.store.find_by_idempotency_key(idempotency_key) if idempotency_key else None
        existing = existing or await self.store.get_agent(name)
        if existing is not None:
            if existing.spec_hash == fingerprint and existing.name == name:
                turns = await self.store.latest_turns([existing.id])
                return CreateResult(existing, False, turns.get(existing.id))
            what = "idempotency key" if existing.name != name else "name"
            raise Conflict(
                f"an agent with this {what} already exists ({existing.name!r}, status {existing.status}) with a "
                "different spec, cwd or prompt; use command_agent to give it a new prompt, pick another name, "
                "or delete_agent it first"
            )
        self._runner_for(spec.runner).check_available(spec, self.settings.env)
        agent_id = "ag_" + uuid.uuid4().hex[:10]
        try:
            agent = await self.store.insert_agent(
                id=agent_id, name=name, spec=spec, spec_hash=fingerprint, cwd=real_cwd, idempotency_key=idempotency_key
            )
        except Exception as exc:  # a concurrent create of the same name won the race
            if "UNIQUE" in str(exc):
                raise Conflict(f"agent {name!r} was just created by another call; call get_agent_status") from None
            raise
        await anyio.to_thread.run_sync(lambda: private_dirs(self.agent_dir(agent_id) / "turns"))
        log.info("agent_created", agent=name, agent_id=agent_id, runner=spec.runner, template=template)
        turn = None
        if prompt is not None:
            turn = await self._enqueue(agent, prompt)
        return CreateResult(await self.get_agent(agent_id), True, turn)

    async def command_agent(self, ref: str, prompt: str) -> TurnRow:
        self.validate_prompt(prompt)
        agent = await self.get_agent(ref)
        running = await self.store.count_turns(agent.id, "running")
        queued = await self.store.count_turns(agent.id, "queued")
        conc = agent.spec.concurrency
        if running or queued:
            if conc.strategy == "reject":
                raise Conflict(
                    f"agent {agent.name!r} is busy (strategy reject); wait_for_agents(['{agent.name}']) and command "
                    "it again, or create another agent"
                )
            if conc.strategy == "queue" and queued >= conc.max_queued:
                raise Conflict(
                    f"agent {agent.name!r} already has {queued} queued turn(s) (max_queued {conc.max_queued}); "
                    "wait_for_agents first or create another agent"
                )
            if conc.strategy == "replace":
                await self._stop_turns(agent, status="cancelled", reason="replaced by a newer command")
        return await self._enqueue(agent, prompt)

    async def _enqueue(self, agent: AgentRow, prompt: str) -> TurnRow:
        turn = await self.store.insert_turn(
            agent_id=agent.id, prompt=prompt, runner=agent.spec.runner, model=agent.spec.model
        )
        if await self.store.count_turns(agent.id, "running") == 0:
            await self.store.set_agent_status(agent.id, "queued")
        await self.dispatch()
        self.notify()
        got = await self.store.get_turn(agent.id, turn.n)
        assert got is not None
        return got

    # -- scheduling ------------------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        """Start queued turns, oldest first, while the fleet-wide cap allows (one running turn per agent)."""
        async with self._dispatch_lock:
            for turn in await self.store.turns_with_status("queued"):
                agent = await self.store.get_agent(turn.agent_id)
                if agent is None:  # deleted meanwhile
                    await self.store.finish_turn(turn.agent_id, turn.n, status="cancelled", reason="agent deleted")
                    continue
                if not await self.store.claim_turn(agent.id, turn.n, max_running=self.settings.max_concurrent):
                    continue
                await self._spawn(agent, turn)

    async def _spawn(self, agent: AgentRow, turn: TurnRow) -> None:
        req = self.turn_request(agent, turn)
        files = self.turn_files(agent.id, turn.n)
        try:
            runner = self._runner_for(agent.spec.runner)
            plan = runner.build(req)
            spawned = await anyio.to_thread.run_sync(proc.spawn, plan, files)
        except Exception as exc:
            msg = f"could not start the turn: {exc}"
            log.warning("spawn_failed", agent=agent.name, turn=turn.n, error=str(exc))
            await self.store.finish_turn(
                agent.id, turn.n, status="failed", reason="spawn_failed", error=msg, is_error=True,
                agent_status="failed",
            )  # fmt: skip
            self.notify()
            return
        await self.store.set_turn_process(
            agent.id, turn.n, pid=spawned.pid, proc_start=spawned.start_time, out_path=str(files.out),
            model=agent.spec.model,
        )  # fmt: skip
        log.info("turn_started", agent=agent.name, turn=turn.n, pid=spawned.pid, runner=agent.spec.runner)
        self._start_follower(agent.id, turn.n)

    def turn_request(self, agent: AgentRow, turn: TurnRow) -> TurnRequest:
        return TurnRequest(
            agent_id=agent.id, agent_name=agent.name, turn=turn.n, prompt=turn.prompt, spec=agent.spec,
            cwd=Path(agent.cwd), agent_dir=self.agent_dir(agent.id), session_id=agent.session_id,
            env={**self.settings.env, "AGENT_FLEET_HOME": str(self.settings.home)},
        )  # fmt: skip

    def _start_follower(self, agent_id: str, n: int) -> None:
        key = (agent_id, n)
        if key in self._followed or self._tg is None:
            return
        self._followed.add(key)
        self._tg.start_soon(self._follow, agent_id, n)

    async def _follow(self, agent_id: str, n: int) -> None:
        try:
            await self._follow_turn(agent_id, n)
        except Exception:
            log.exception("follow_failed", agent_id=agent_id, turn=n)
        finally:
            self._followed.discard((agent_id, n))
            self.notify()

    async def _follow_turn(self, agent_id: str, n: int) -> None:
        agent = await self.store.get_agent(agent_id, include_deleted=True)
        turn = await self.store.get_turn(agent_id, n)
        if agent is None or turn is None or turn.status != "running" or turn.pid is None:
            return
        files = self.turn_files(agent_id, n)
        req = self.turn_request(agent, turn)
        reader = TranscriptReader(files.out, self._runner_for(agent.spec.runner).new_parser(req))
        stats = TurnStats()
        spec = agent.spec
        last_flush = 0.0
        session_saved = agent.session_id
        while True:
            alive = proc.is_alive(turn.pid, turn.proc_start)
            events = await anyio.to_thread.run_sync(reader.read_new)
            for ev in events:
                stats.apply(ev)
            if stats.session_id and stats.session_id != session_saved:
                await self.store.set_session_id(agent_id, stats.session_id)
                session_saved = stats.session_id
            now = time.time()
            if events and now - last_flush >= STATS_FLUSH_S:
                await self.store.update_turn_stats(agent_id, n, stats.db_fields())
                last_flush = now
                self.notify()
            if not alive:
                break
            stop = _limit_breach(spec, turn, stats, now)
            if stop is not None:
                await self._stop_turn(agent, turn, status="failed", reason=stop[0], error=stop[1], stats=stats)
                await self.dispatch()  # the agent's next queued turn may start now
                return
            await anyio.sleep(self.settings.poll_interval_s)
        code = await anyio.to_thread.run_sync(proc.exit_code, files, turn.pid)
        for ev in await anyio.to_thread.run_sync(reader.read_new):
            stats.apply(ev)
        stream_result = stats.has_result
        for ev in await anyio.to_thread.run_sync(reader.close, code, files.err):
            stats.apply(ev)
        await self.store.update_turn_stats(agent_id, n, stats.db_fields())
        if stats.session_id and stats.session_id != session_saved:
            await self.store.set_session_id(agent_id, stats.session_id)
        if stats.has_result and (stream_result or code is not None):
            status = "failed" if stats.is_error else "succeeded"
            reason = stats.reason if stats.is_error else None
        else:
            status, reason = "lost", "the process ended without a result and its exit status is unknown"
        if status == "lost":
            error = reason
        else:
            error = (stats.error_text() or reason or "failed") if status != "succeeded" else None
        closed = await self.store.finish_turn(
            agent_id, n, status=status, reason=reason, exit_code=code, result_text=stats.result_text,
            is_error=status != "succeeded", error=error, agent_status="idle" if status == "succeeded" else "failed",
        )  # fmt: skip
        if closed:
            log.info("turn_finished", agent=agent.name, turn=n, status=status, reason=reason, exit_code=code)
        await self.dispatch()

    async def _stop_turn(
        self, agent: AgentRow, turn: TurnRow, *, status: str, reason: str, error: str | None = None,
        stats: TurnStats | None = None, agent_status: str | None = None,
    ) -> None:  # fmt: skip
        """Close the turn first (first closer wins), then kill its process group."""
        closed = await self.store.finish_turn(
            agent.id, turn.n, status=status, reason=reason, error=error or reason,
            result_text=stats.result_text if stats else None, is_error=True,
            agent_status=agent_status or ("failed" if status == "failed" else "stopped"),
        )  # fmt: skip
        if turn.pid is not None:
            await anyio.to_thread.run_sync(
                lambda: proc.kill_group(turn.pid or 0, turn.proc_start, grace_s=self.settings.kill_grace_s)
            )
        if closed:
            log.info("turn_stopped", agent=agent.name, turn=turn.n, status=status, reason=reason)
        self.notify()

    async def _stop_turns(self, agent: AgentRow, *, status: str, reason: str, agent_status: str | None = None) -> int:
        """Cancel every queued turn and stop every running turn of the agent (kills in parallel)."""
        turns = [t for t in await self.store.turns_of(agent.id) if not t.done]
        async with anyio.create_task_group() as tg:
            for t in turns:
                if t.status == "queued":
                    await self.store.finish_turn(agent.id, t.n, status="cancelled", reason=reason)
                else:
                    tg.start_soon(
                        lambda t=t: self._stop_turn(agent, t, status=status, reason=reason, agent_status=agent_status)
                    )
        return len(turns)

    # -- delete ----------------------------------------------------------------------------------------------
    async def delete_agents(self, refs: Sequence[str] | str, *, purge: bool = False) -> list[tuple[AgentRow, int]]:
        """Stop the agents' processes (whole process groups, in parallel) and retire them."""
        if refs == "all" or refs == ["all"]:
            agents = await self.store.list_agents()
        else:
            names = [refs] if isinstance(refs, str) else list(refs)
            if not names:
                raise InvalidRequest('name at least one agent, or pass "all"')
            agents = [await self.get_agent(r) for r in names]  # all-or-nothing: unknown names fail first
        results: list[tuple[AgentRow, int]] = []

        async def retire(agent: AgentRow) -> None:
            stopped = await self._stop_turns(agent, status="cancelled", reason="agent deleted", agent_status="deleted")
            await self.store.mark_deleted(agent.id)
            if purge:
                await self.store.purge_agent(agent.id)
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(self.agent_dir(agent.id), ignore_errors=True))
            results.append((agent, stopped))
            log.info("agent_deleted", agent=agent.name, agent_id=agent.id, stopped_turns=stopped, purge=purge)

        async with anyio.create_task_group() as tg:
            for agent in agents:
                tg.start_soon(retire, agent)
        self.notify()
        await self.dispatch()
        return sorted(results, key=lambda r: r[0].created_at)

    # -- waiting ---------------------------------------------------------------------------------------------
    async def busy(self, agent_ids: Sequence[str]) -> set[str]:
        """Agents with unfinished work. An agent's turns start in number order, so its latest turn is the last to
        finish: the agent is busy exactly while that turn is not done."""
        latest = await self.store.latest_turns(agent_ids)
        return {aid for aid, t in latest.items() if not t.done}


def _limit_breach(spec: AgentSpec, turn: TurnRow, stats: TurnStats, now: float) -> tuple[str, str] | None:
    if spec.timeout_s is not None and turn.started_at is not None and now - turn.started_at > spec.timeout_s:
        return "timeout", f"timed out after {spec.timeout_s:g} s (timeout_s); raise it or split the task"
    if spec.max_cost_usd is not None and stats.cost_usd is not None and stats.cost_usd >= spec.max_cost_usd:
        return "max_cost", f"stopped at ${stats.cost_usd:.4f}: max_cost_usd {spec.max_cost_usd:g} reached"
    return None
