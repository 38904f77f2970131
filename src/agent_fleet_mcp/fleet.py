"""The supervisor: agents and turns, the concurrency strategies, the global capacity, waits and restart
reconciliation. It knows the Store and the Runner protocol, and spawns/kills only through runners/process.py.

Life of a turn: ``queued`` (inserted) -> ``running`` (claimed atomically under the fleet-wide cap, process
spawned, followed by a follower task that folds its transcript into the store) -> ``succeeded | failed |
cancelled | lost``. Intentional stops (delete, replace, timeout, budget) write the final status *before* killing,
so whichever follower sees the death afterwards changes nothing. Every server sharing a fleet home follows every
running turn (idempotent), so a turn is never left ``running`` while some server is up.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import anyio
import anyio.abc
import structlog

from agent_fleet_mcp import budgets, deprecation
from agent_fleet_mcp import catalog as catalog_mod
from agent_fleet_mcp.batches import BatchEngine
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import AlreadyExists, Conflict, InvalidRequest, LimitReached
from agent_fleet_mcp.inputs import MAX_PROMPT_CHARS, quote, unusable_char
from agent_fleet_mcp.permissions import check_readonly
from agent_fleet_mcp.private import private_dirs
from agent_fleet_mcp.reader import FleetReader, turn_files, turn_request
from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners import started as started_mod
from agent_fleet_mcp.runners.base import Runner, TurnLimits, TurnRequest
from agent_fleet_mcp.spec import AgentSpec, inapplicable_limits
from agent_fleet_mcp.store.models import AgentRow, AgentStatus, TurnEnd, TurnRow
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.tracking import TurnStats
from agent_fleet_mcp.transcript import TranscriptReader
from agent_fleet_mcp.turn_outcome import ended_on_disk, turn_outcome

log = structlog.get_logger("agent_fleet.fleet")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_NAMES = frozenset({"all", "any", "none", "null"})  # keywords of the tools, any letter case
STATS_FLUSH_S = 0.5
ORPHAN_CLAIM_S = 30.0  # a claimed turn with no process after this long was claimed by a server that died
TICK_S = 1.0
CLOSED_CHECK_S = 2.0  # how often a follower looks whether another process closed its turn (then stops it)

ProgressFn = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class CreateResult:
    agent: AgentRow
    created: bool
    turn: TurnRow | None
    warnings: tuple[str, ...] = ()


def spec_fingerprint(spec: AgentSpec, cwd: str, prompt: str | None) -> str:
    payload = json.dumps({"spec": spec.model_dump(mode="json"), "cwd": cwd, "prompt": prompt}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Fleet:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner_for: Callable[[str], Runner] = get_runner,
    ) -> None:
        self.settings = settings
        self.store = store
        self._runner_for = runner_for
        self.reader = FleetReader(settings, store, runner_for=runner_for)
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()
        self._dispatch_lock = anyio.Lock()
        self._followed: set[tuple[str, int]] = set()
        self.today: Callable[[], date] = deprecation.utc_today  # model end-of-life checks; tests fake the date
        self._claimer = started_mod.claimer_identity()
        # Only a server of the host (not one an agent started: AGENT_FLEET_DEPTH > 0) starts, follows and stops turn
        # processes. An agent's turn is contained in its own PID namespace, where the host's pids mean nothing: a
        # server in there only records agents and turns in the shared store, and the host's servers run them.
        self.supervises = settings.depth == 0
        self.batches = BatchEngine(store, self)

    # -- lifecycle -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Fleet]:
        """Run the supervisor (scheduler, followers) for the duration of the block. Agent processes are detached:
        leaving the block stops following them, it does not kill them."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.supervises:
                await self.reconcile()
            tg.start_soon(self._ticker)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
                self._tg = None

    async def reconcile(self) -> None:
        """Adopt running turns (follow them; dead ones are closed from their transcript) and start queued ones."""
        await self._adopt_running()
        await self.batches.advance()
        await self.dispatch()

    async def _adopt_running(self) -> None:
        """Follow every running turn; recover the claimed ones whose pid was never recorded. Empty cgroups of
        turns that are over are removed (never a populated one: the kernel refuses)."""
        running = await self.store.turns_with_status("running")
        live = {(t.agent_id, t.n) for t in running}
        await anyio.to_thread.run_sync(
            lambda: proc.remove_empty_cgroups(self.settings.home, keep=lambda a, n: (a, n) in live)
        )
        for turn in running:
            if turn.pid is None:
                await self._recover_unrecorded(turn)
            else:
                self._start_follower(turn.agent_id, turn.n)

    async def _recover_unrecorded(self, turn: TurnRow) -> None:
        """A claimed turn without a recorded pid: its claimer is spawning it now, or died in the spawn window. The
        turn's started marker tells whether it ran (runners/started.py): adopt its process (followed, or closed
        from its exit file if gone); no marker and a dead claimer (or an old claim) means it never started:
        queue it again. A late spawn of the old claim cannot run it twice: the marker is taken exclusively."""
        files = self.turn_files(turn.agent_id, turn.n)
        now = time.time()
        mark = await anyio.to_thread.run_sync(lambda: started_mod.read(files.exit, now=now))
        if mark is not None and mark.pid is not None:
            if await self.store.adopt_turn_process(
                turn.agent_id, turn.n, pid=mark.pid, proc_start=mark.proc_start, out_path=str(files.out)
            ):
                log.info("turn_adopted", agent_id=turn.agent_id, turn=turn.n, pid=mark.pid, alive=mark.alive)
            self._start_follower(turn.agent_id, turn.n)
        elif mark is not None:
            if mark.stale:
                await self.store.finish_turn(
                    turn.agent_id, turn.n, status="lost", reason="started, but its process could not be identified",
                    error="the turn started but its process could not be identified; command the agent again",
                    is_error=True, agent_status="failed",
                )  # fmt: skip
        elif not started_mod.claimer_alive(turn.claimed_by) or now - (turn.started_at or now) > ORPHAN_CLAIM_S:
            await self.store.requeue_turn(turn.agent_id, turn.n)
            log.info("turn_requeued", agent_id=turn.agent_id, turn=turn.n, claimed_by=turn.claimed_by)
            self.notify()

    async def _ticker(self) -> None:
        """Periodic pass for what other processes sharing the home may have changed."""
        while True:
            with anyio.move_on_after(TICK_S):
                await self._changed.wait()
            try:
                if self.supervises:
                    await self._adopt_running()
                    await self.enforce_shared_budgets()
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
        return turn_files(self.settings, agent_id, n)

    # -- lookups ---------------------------------------------------------------------------------------------
    async def get_agent(self, ref: str, *, include_deleted: bool = False) -> AgentRow:
        """A live agent by name or id (``FleetReader.get_agent``)."""
        return await self.reader.get_agent(ref, include_deleted=include_deleted)

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
        max_tokens: int | None = None,
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
            ("max_tokens", max_tokens),
        ):  # fmt: skip
            if value is not None:
                overrides[key] = value
        try:
            spec = AgentSpec.model_validate({**base.model_dump(), **overrides})
        except ValueError as exc:
            raise InvalidRequest(f"invalid agent settings: {exc}") from None
        if bad := inapplicable_limits(spec):
            raise InvalidRequest(
                f"{' and '.join(bad)} cannot apply to runner {spec.runner!r}: it reports no cost or tokens; leave "
                "it out and bound the agent with max_turns (turns over its life) and timeout_s"
            )
        check_readonly(spec)  # e.g. permission="readonly" over a template whose tools include bash
        return spec

    def validate_cwd(self, cwd: str | None) -> str:
        path = Path(cwd).expanduser() if cwd else self.settings.project_dir
        if not path.is_absolute():
            path = self.settings.project_dir / path
        shown = quote(str(path))
        try:
            if not path.exists():
                raise InvalidRequest(f"cwd {shown} does not exist; pass an existing directory (absolute path)")
            if not path.is_dir():
                raise InvalidRequest(f"cwd {shown} is not a directory; pass the folder the agent should work in")
            return str(path.resolve())
        except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES ...
            raise InvalidRequest(
                f"cwd {shown} cannot be used: {exc.strerror or exc}; pass an existing directory you can access "
                "(absolute path, each part under 255 bytes)"
            ) from None

    @staticmethod
    def validate_name(name: str) -> None:
        if not NAME_RE.match(name):
            raise InvalidRequest(
                f"bad agent name {quote(name)}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or "
                "digit"
            )
        if name.lower() in RESERVED_NAMES:
            raise InvalidRequest(
                f"agent name {name!r} is reserved (tools read {', '.join(sorted(RESERVED_NAMES))} as keywords: "
                'delete_agent("all") means every agent); pick another name'
            )

    @staticmethod
    def validate_prompt(prompt: str) -> None:
        if not prompt.strip():
            raise InvalidRequest("prompt is empty; say what the agent should do")
        bad = unusable_char(prompt)
        if bad is not None:
            raise InvalidRequest(f"prompt contains {bad[1]} at position {bad[0]:,}; remove it")
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
        max_tokens: int | None = None,
        batch_id: str | None = None,
    ) -> CreateResult:
        self.validate_name(name)
        if prompt is not None:
            self.validate_prompt(prompt)
        real_cwd = self.validate_cwd(cwd)
        spec = self.resolve_spec(
            template=template, runner=runner, model=model, system_prompt=system_prompt, permission=permission,
            max_turns=max_turns, max_cost_usd=max_cost_usd, timeout_s=timeout_s, cwd=real_cwd, max_tokens=max_tokens,
        )  # fmt: skip
        warnings = self.model_warnings(spec)
        fingerprint = spec_fingerprint(spec, real_cwd, prompt)
        found = await self._existing(name, idempotency_key, fingerprint, warnings)
        if found is not None:
            return found
        self.check_depth()
        self._runner_for(spec.runner).check_available(spec, self.settings.env)
        if prompt is not None:
            await self._refuse_over_budget(None, spec, batch_id)
        agent_id = "ag_" + uuid.uuid4().hex[:10]
        s = self.settings
        try:
            agent = await self.store.insert_agent(
                id=agent_id, name=name, spec=spec, spec_hash=fingerprint, cwd=real_cwd,
                idempotency_key=idempotency_key, parent_id=s.parent_id, root_id=s.root_id, depth=s.depth + 1,
                batch_id=batch_id, max_tree_agents=s.max_tree_agents if s.root_id else None,
            )  # fmt: skip
        except AlreadyExists:  # another call (maybe another server) created it a moment ago
            found = await self._existing(name, idempotency_key, fingerprint, warnings)
            if found is not None:
                return found
            raise Conflict(f"agent {name!r} was just created and deleted by other calls; try again") from None
        await anyio.to_thread.run_sync(lambda: private_dirs(self.agent_dir(agent_id) / "turns"))
        log.info("agent_created", agent=name, agent_id=agent_id, runner=spec.runner, template=template)
        turn = None
        if prompt is not None:
            turn = await self._enqueue(agent, prompt)
        return CreateResult(await self.get_agent(agent_id), True, turn, warnings)

    def model_warnings(self, spec: AgentSpec) -> tuple[str, ...]:
        """Refuse a model past its end of life (naming the replacement); warn when it is near."""
        notice = deprecation.check_model(deprecation.effective_model(spec.runner, spec.model), today=self.today())
        if notice is None:
            return ()
        if notice.level == "error":
            fix = f"pass model={notice.replacement!r}"
            if spec.template:
                fix += f" or update the model of template {spec.template!r}"
            raise InvalidRequest(f"{notice.message} ({fix})")
        return (notice.message,)

    async def _existing(
        self, name: str, idempotency_key: str | None, fingerprint: str, warnings: tuple[str, ...]
    ) -> CreateResult | None:
        """The live agent this create is a retry of (same name, spec, cwd and prompt), None when there is none;
        Conflict when the name or key is taken by a different agent."""
        existing = await self.store.find_by_idempotency_key(idempotency_key) if idempotency_key else None
        existing = existing or await self.store.get_agent(name)
        if existing is None:
            return None
        if existing.spec_hash == fingerprint and existing.name == name:
            turns = await self.store.latest_turns([existing.id])
            return CreateResult(existing, False, turns.get(existing.id), warnings)
        what = "idempotency key" if existing.name != name else "name"
        raise Conflict(
            f"an agent with this {what} already exists ({existing.name!r}, status {existing.status}) with a "
            "different spec, cwd or prompt; use command_agent to give it a new prompt, pick another name, "
            "or delete_agent it first"
        )

    def check_depth(self) -> None:
        """Refuse to create agents from a server that runs inside an agent already at the deepest level."""
        s = self.settings
        if s.depth + 1 > s.max_depth:
            raise LimitReached(
                f"delegation depth limit: this server runs inside an agent at depth {s.depth} and "
                f"AGENT_FLEET_MAX_DEPTH is {s.max_depth}, so it cannot create agents; do the work yourself "
                "(or ask the orchestrator above you to delegate it)"
            )

    async def _refuse_over_budget(self, agent: AgentRow | None, spec: AgentSpec, batch_id: str | None) -> None:
        """Raise LimitReached when a new turn could not start (budget spent), with the figure left."""
        probe = agent or AgentRow(
            id="", name="(new)", status="idle", spec=spec, spec_hash="", cwd="", idempotency_key=None,
            session_id=None, last_error=None, created_at=0.0, updated_at=0.0, deleted_at=None, batch_id=batch_id,
        )  # fmt: skip
        tl = await budgets.turn_limits(self.store, self.settings, probe, now=time.time())
        turns_before = await self.store.count_turns(probe.id, "queued", "running", "succeeded", "failed", "lost")
        stop = budgets.refusal(probe, self.settings, tl, turns_before=turns_before)
        if stop is not None:
            raise LimitReached(stop.message)

    async def command_agent(self, ref: str, prompt: str) -> TurnRow:
        self.validate_prompt(prompt)
        agent = await self.get_agent(ref)
        notice = deprecation.check_model(deprecation.effective_model(agent.spec.runner, agent.spec.model),
                                         today=self.today())  # fmt: skip
        if notice is not None and notice.level == "error":  # every request would fail: say so now
            raise InvalidRequest(
                f"{notice.message}; agent {agent.name!r} cannot run: create a new agent with "
                f"model={notice.replacement!r} (its transcripts stay readable)"
            )
        await self._refuse_over_budget(agent, agent.spec, agent.batch_id)
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
        await self.store.mark_queued_unless_running(agent.id)
        await self.dispatch()
        self.notify()
        got = await self.store.get_turn(agent.id, turn.n)
        assert got is not None
        return got

    # -- scheduling ------------------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        """Start queued turns, oldest first, while the fleet-wide cap allows (one running turn per agent). A server
        inside an agent starts nothing: the host's servers do (see ``supervises``)."""
        if not self.supervises:
            return
        async with self._dispatch_lock:
            for turn in await self.store.turns_with_status("queued"):
                agent = await self.store.get_agent(turn.agent_id)
                if agent is None:  # deleted meanwhile
                    await self.store.finish_turn(turn.agent_id, turn.n, status="cancelled", reason="agent deleted")
                    continue
                if not await self.store.claim_turn(
                    agent.id, turn.n, max_running=self.settings.max_concurrent, claimer=self._claimer
                ):
                    continue
                limits = await budgets.turn_limits(self.store, self.settings, agent, now=time.time())
                before = await self.store.count_turns(agent.id, "succeeded", "failed", "lost")
                stop = budgets.refusal(agent, self.settings, limits, turns_before=before)
                if stop is not None:  # a budget ran out while the turn was queued: it never starts
                    await self.store.finish_turn(
                        agent.id, turn.n, status="failed", reason=stop.reason, error=stop.message, is_error=True,
                        agent_status="failed",
                    )  # fmt: skip
                    log.info("turn_refused", agent=agent.name, turn=turn.n, reason=stop.reason)
                    self.notify()
                    continue
                await self._spawn(agent, turn, limits)

    async def _spawn(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits) -> None:
        req = self.turn_request(agent, turn, limits)
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

    def turn_request(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits | None = None) -> TurnRequest:
        return turn_request(self.settings, agent, turn, limits)

    def _start_follower(self, agent_id: str, n: int) -> None:
        key = (agent_id, n)
        if key in self._followed or self._tg is None or not self.supervises:
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
        limits = budgets.Limits.of(agent.spec, self.settings)
        spent_before = await budgets.agent_spent(self.store, agent_id, exclude_turn=n)
        shared: budgets.Stop | None = None  # the fleet's or the batch's budget, seen spent
        breach_at: float | None = None
        last_flush = 0.0
        session_saved = agent.session_id
        pid = turn.pid
        seen_alive = False
        last_check = time.time()
        while True:
            alive = proc.is_alive(pid, turn.proc_start)
            seen_alive = seen_alive or alive
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
                shared = shared or await budgets.shared_breach(self.store, self.settings, agent)
            if alive and now - last_check >= CLOSED_CHECK_S:  # closed elsewhere (a server inside an agent)?
                last_check = now
                current = await self.store.get_turn(agent_id, n)
                if current is None or current.status != "running":
                    kill = functools.partial(proc.kill_group, pid, turn.proc_start, grace_s=self.settings.kill_grace_s,
                                             files=files)  # fmt: skip
                    await anyio.to_thread.run_sync(kill)
                    log.info("turn_stopped_for_another", agent=agent.name, turn=n)
                    return
            if not alive:
                moved = await self._adopt_started(agent_id, turn, files)
                if moved is None or moved.pid is None:
                    break
                turn, pid = moved, moved.pid
                continue
            elapsed = None if turn.started_at is None else now - turn.started_at
            stop = budgets.running_breach(limits, spent_before, stats.cost_usd, _tokens(stats), elapsed) or shared
            if stop is not None and stop.reason != "timeout" and agent.spec.runner in budgets.SELF_LIMITING:
                # the runner stops itself on its budget (and its answer may be on its way): give it a moment
                breach_at = breach_at or now
                if now - breach_at < budgets.SELF_STOP_GRACE_S:
                    stop = None
            if stop is not None:
                await self.store.update_turn_stats(agent_id, n, stats.db_fields())  # what it spent, for the budgets
                await self._stop_turn(agent, turn, status="failed", reason=stop.reason, error=stop.message,
                                      stats=stats)  # fmt: skip
                await self.dispatch()  # the agent's next queued turn may start now
                return
            await anyio.sleep(self.settings.poll_interval_s)
        await anyio.to_thread.run_sync(proc.release_turn, files)  # what it left behind in its cgroup ends with it
        code = await anyio.to_thread.run_sync(proc.exit_code, files, pid)
        for ev in await anyio.to_thread.run_sync(reader.read_new):
            stats.apply(ev)
        stream_result = stats.has_result
        for ev in await anyio.to_thread.run_sync(reader.close, code, files.err):
            stats.apply(ev)
        await self.store.update_turn_stats(agent_id, n, stats.db_fields())
        if stats.session_id and stats.session_id != session_saved:
            await self.store.set_session_id(agent_id, stats.session_id)
        status, reason, error = turn_outcome(stats, stream_result=stream_result, exit_code=code)
        # a process that ended while no server watched ended when its files say, not when this server noticed
        ended = None if seen_alive else await anyio.to_thread.run_sync(ended_on_disk, files)
        closed = await self.store.finish_turn(
            agent_id, n, status=status, reason=reason, exit_code=code, result_text=stats.result_text,
            is_error=status != "succeeded", error=error, agent_status="idle" if status == "succeeded" else "failed",
            ended_at=None if ended is None else max(ended, turn.started_at or ended),
        )  # fmt: skip
        if closed:
            log.info("turn_finished", agent=agent.name, turn=n, status=status, reason=reason, exit_code=code)
        await self.dispatch()

    async def _adopt_started(self, agent_id: str, turn: TurnRow, files: proc.TurnFiles) -> TurnRow | None:
        """The followed pid is gone: if the turn's started marker names another process (this spawn found the turn
        already started and ran nothing), follow that one instead. None: the followed process was the turn's."""
        now = time.time()
        mark = await anyio.to_thread.run_sync(lambda: started_mod.read(files.exit, now=now))
        if mark is None or mark.pid is None or mark.pid == turn.pid:
            return None
        await self.store.adopt_turn_process(
            agent_id, turn.n, pid=mark.pid, proc_start=mark.proc_start, out_path=str(files.out)
        )
        log.info("turn_adopted", agent_id=agent_id, turn=turn.n, pid=mark.pid, was=turn.pid, alive=mark.alive)
        got = await self.store.get_turn(agent_id, turn.n)
        return got if got is not None and got.status == "running" and got.pid == mark.pid else None

    async def enforce_shared_budgets(self) -> None:
        """Stop every running turn once the fleet's daily budget or its batch's budget is spent (a turn that
        reports no usage of its own is stopped too: the budget is shared)."""
        cache: dict[str, budgets.Stop | None] = {}
        for turn in await self.store.turns_with_status("running"):
            agent = await self.store.get_agent(turn.agent_id)
            if agent is None or (self.settings.budget_usd is None and agent.batch_id is None):
                continue
            if agent.spec.runner in budgets.SELF_LIMITING and turn.pid is not None:
                continue  # its follower stops it, after giving it a moment to stop itself
            stop = await budgets.shared_breach(self.store, self.settings, agent, cache)
            if stop is not None:
                await self._stop_turn(agent, turn, status="failed", reason=stop.reason, error=stop.message)

    async def _stop_turn(
        self, agent: AgentRow, turn: TurnRow, *, status: TurnEnd, reason: str, error: str | None = None,
        stats: TurnStats | None = None, agent_status: AgentStatus | None = None,
    ) -> None:  # fmt: skip
        """Close the turn first (first closer wins), then kill its process group. A server that does not supervise
        only closes it: the host's follower of the turn sees it closed and stops the process."""
        closed = await self.store.finish_turn(
            agent.id, turn.n, status=status, reason=reason, error=error or reason,
            result_text=stats.result_text if stats else None, is_error=True,
            agent_status=agent_status or ("failed" if status == "failed" else "stopped"),
        )  # fmt: skip
        if turn.pid is not None and self.supervises:
            await anyio.to_thread.run_sync(
                lambda: proc.kill_group(turn.pid or 0, turn.proc_start, grace_s=self.settings.kill_grace_s,
                                        files=self.turn_files(agent.id, turn.n))
            )
        if closed:
            log.info("turn_stopped", agent=agent.name, turn=turn.n, status=status, reason=reason)
        self.notify()

    async def _stop_turns(
        self, agent: AgentRow, *, status: TurnEnd, reason: str, agent_status: AgentStatus | None = None
    ) -> int:
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


def _tokens(stats: TurnStats) -> int:
    return stats.input_tokens + stats.output_tokens + stats.cache_read_tokens + stats.cache_write_tokens
