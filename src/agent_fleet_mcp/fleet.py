"""The write side of the fleet: creating, commanding and deleting agents, with their validation, spec resolution,
concurrency strategies and budget refusals. Turns are started, followed and stopped by the ``Supervisor`` a
``Fleet`` owns (supervisor.py, where the life of a turn is described).
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
from datetime import date
from pathlib import Path

import anyio
import structlog

from agent_fleet_mcp import budgets, deprecation
from agent_fleet_mcp import catalog as catalog_mod
from agent_fleet_mcp import isolation as iso
from agent_fleet_mcp.batches import BatchEngine
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import AlreadyExists, Conflict, InvalidRequest, LimitReached
from agent_fleet_mcp.inputs import MAX_PROMPT_CHARS, quote, unusable_char
from agent_fleet_mcp.permissions import check_readonly
from agent_fleet_mcp.private import private_dirs
from agent_fleet_mcp.reader import FleetReader
from agent_fleet_mcp.runners import get_runner
from agent_fleet_mcp.runners import process as proc
from agent_fleet_mcp.runners.base import Runner, TurnLimits, TurnRequest
from agent_fleet_mcp.spec import AgentSpec, inapplicable_limits
from agent_fleet_mcp.store.models import AgentRow, TurnRow
from agent_fleet_mcp.store.protocol import Store
from agent_fleet_mcp.supervisor import Processes, Supervisor

log = structlog.get_logger("agent_fleet.fleet")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_NAMES = frozenset({"all", "any", "none", "null"})  # keywords of the tools, any letter case

ProgressFn = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class Deleted:
    agent: AgentRow
    stopped_turns: int
    worktree: iso.Removed | None  # what became of its worktree and branch (None: it had none)


@dataclass(frozen=True)
class CreateResult:
    agent: AgentRow
    created: bool
    turn: TurnRow | None
    warnings: tuple[str, ...] = ()


def spec_fingerprint(spec: AgentSpec, cwd: str, prompt: str | None) -> str:
    dumped = spec.model_dump(mode="json")
    if dumped.get("isolation") is None:  # automatic: the fingerprint of an agent made before the field existed
        dumped.pop("isolation", None)
    payload = json.dumps({"spec": dumped, "cwd": cwd, "prompt": prompt}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Fleet:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner_for: Callable[[str], Runner] = get_runner,
        processes: Processes = proc,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``runner_for``, ``processes`` and ``clock`` are the seams unit tests fake (testing/fake_runner.py)."""
        self.settings = settings
        self.store = store
        self._runner_for = runner_for
        self._clock = clock
        self.today: Callable[[], date] = deprecation.utc_today  # model end-of-life checks; tests fake the date
        self.supervisor = Supervisor(
            settings, store, runner_for=runner_for, processes=processes, clock=clock,
            advance_batches=lambda: self.batches.advance(),
        )  # fmt: skip
        self.reader = FleetReader(settings, store, runner_for=runner_for)
        self.batches = BatchEngine(store, self)

    # -- lifecycle -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Fleet]:
        """Run the supervisor (scheduler, followers) for the duration of the block. Agent processes are detached:
        leaving the block stops following them, it does not kill them."""
        async with self.supervisor.running():
            yield self

    async def reconcile(self) -> None:
        """Adopt running turns (follow them; dead ones are closed from their transcript) and start queued ones."""
        await self.supervisor.reconcile()

    def notify(self) -> None:
        self.supervisor.notify()

    def change_mark(self) -> anyio.Event:
        """See ``Supervisor.change_mark``: take it before a look, pass it to ``changed(since=...)`` after."""
        return self.supervisor.change_mark()

    async def changed(self, within_s: float, *, since: anyio.Event | None = None) -> None:
        """Return when something changed in this process, or after ``within_s`` (other processes are polled)."""
        await self.supervisor.changed(within_s, since=since)

    async def stirred(self, within_s: float) -> None:
        """Like ``changed``, and also when only a running turn's usage changed."""
        await self.supervisor.stirred(within_s)

    # -- paths -----------------------------------------------------------------------------------------------
    def agent_dir(self, agent_id: str) -> Path:
        return self.supervisor.agent_dir(agent_id)

    def turn_files(self, agent_id: str, n: int) -> proc.TurnFiles:
        return self.supervisor.turn_files(agent_id, n)

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
        isolation: str | None = None,
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
            ("max_tokens", max_tokens), ("isolation", isolation),
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
        isolation: str | None = None,
        start_from: str | None = None,
    ) -> CreateResult:
        """``isolation``: ``worktree`` | ``none`` | None (automatic, see ``isolation.py``). ``start_from``: the
        branch or commit a worktree starts from (chained run_agents runs) instead of the checkout's current state."""
        self.validate_name(name)
        if prompt is not None:
            self.validate_prompt(prompt)
        real_cwd = self.validate_cwd(cwd)
        spec = self.resolve_spec(
            template=template, runner=runner, model=model, system_prompt=system_prompt, permission=permission,
            max_turns=max_turns, max_cost_usd=max_cost_usd, timeout_s=timeout_s, cwd=real_cwd, max_tokens=max_tokens,
            isolation=isolation,
        )  # fmt: skip
        warnings, fingerprint = self.model_warnings(spec), spec_fingerprint(spec, real_cwd, prompt)
        found = await self._existing(name, idempotency_key, fingerprint, warnings)
        if found is not None:
            return found
        decision = await iso.decide(spec, real_cwd)
        warnings += (decision.note,) if decision.note else ()
        await self._admit(spec, batch_id, with_turn=prompt is not None)
        agent_id = "ag_" + uuid.uuid4().hex[:10]
        s = self.settings
        ws = None
        if decision.worktree:
            try:
                ws = await iso.create(
                    home=s.home, cwd=real_cwd, agent_id=agent_id, agent_name=name, start_from=start_from
                )
            except Conflict:  # its branch exists: a concurrent create of the same agent may have made it
                found = await self._existing(name, idempotency_key, fingerprint, warnings)
                if found is not None:
                    return found
                raise
        folder = self.agent_dir(agent_id)
        try:
            await anyio.to_thread.run_sync(lambda: private_dirs(folder / "turns"))
            agent = await self.store.insert_agent(
                id=agent_id, name=name, spec=spec, spec_hash=fingerprint, cwd=ws.cwd if ws else real_cwd,
                idempotency_key=idempotency_key, parent_id=s.parent_id, root_id=s.root_id, depth=s.depth + 1,
                batch_id=batch_id, max_tree_agents=s.max_tree_agents if s.root_id else None, workspace=ws,
                prompt=prompt,
            )  # fmt: skip
        except BaseException as exc:
            with anyio.CancelScope(shield=True):  # nothing of an agent that was not stored is left behind
                if not isinstance(exc, AlreadyExists) and await self._stored(agent_id):
                    raise  # cancelled after its commit: the agent and its turn stand
                if ws is not None:
                    await iso.discard(ws)
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
            if not isinstance(exc, AlreadyExists):
                raise
            # another call (maybe another server) created it a moment ago
            found = await self._existing(name, idempotency_key, fingerprint, warnings)
            if found is not None:
                return found
            raise Conflict(f"agent {name!r} was just created and deleted by other calls; try again") from None
        log.info("agent_created", agent=name, agent_id=agent_id, runner=spec.runner, template=template)
        turn = None if prompt is None else await self._queued(agent, 1)
        # as it is now (include_deleted: a delete made while its turn was being spawned says so, it is no error)
        return CreateResult(await self.get_agent(agent_id, include_deleted=True), True, turn, warnings)

    async def _stored(self, agent_id: str) -> bool:
        try:
            return await self.store.get_agent(agent_id, include_deleted=True) is not None
        except Exception:  # the store is unusable: keep what is there (reconcile and doctor sort it out)
            return True

    async def _admit(self, spec: AgentSpec, batch_id: str | None, *, with_turn: bool) -> None:
        """Refuse a new agent this server may not create: too deep, runner unavailable, no budget for its turn."""
        self.check_depth()
        self._runner_for(spec.runner).check_available(spec, self.settings.env)
        if with_turn:
            await self._refuse_over_budget(None, spec, batch_id)

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
        tl = await budgets.turn_limits(self.store, self.settings, probe, now=self._clock())
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
                await self.supervisor.stop_turns(agent, status="cancelled", reason="replaced by a newer command")
        return await self._enqueue(agent, prompt)

    async def _enqueue(self, agent: AgentRow, prompt: str) -> TurnRow:
        turn = await self.store.insert_turn(
            agent_id=agent.id, prompt=prompt, runner=agent.spec.runner, model=agent.spec.model
        )
        await self.store.mark_queued_unless_running(agent.id)
        return await self._queued(agent, turn.n)

    async def _queued(self, agent: AgentRow, n: int) -> TurnRow:
        """Start the turn just queued if the cap allows; the turn as it is now. When the cap is full and the agent
        is not under another (whose running turn would let it past the cap), its new turn starts nothing: the
        dispatch, a read of every queued turn (~2 ms with 400 queued), is skipped. Counted after the turn was
        queued, so a slot freed since then is seen here, and one freed later dispatches by itself."""
        if agent.parent_id is not None or await self.store.count_running() < self.settings.max_concurrent:
            await self.dispatch()
        # new work wakes the tick and the resource notifications, not the waits: a queued turn ends no wait (each
        # woke every wait of a run_agents wave for a look at its batch: 200 creates, 4 calls, 800 looks)
        self.supervisor.notify_spend()
        got = await self.store.get_turn(agent.id, n)
        assert got is not None
        return got

    # -- scheduling (supervisor.py) -------------------------------------------------------------------------
    @property
    def supervises(self) -> bool:
        """Whether this server starts, follows and stops turn processes (see ``Supervisor.supervises``)."""
        return self.supervisor.supervises

    async def dispatch(self) -> None:
        """Start queued turns while the fleet-wide cap allows."""
        await self.supervisor.dispatch()

    async def enforce_shared_budgets(self) -> None:
        await self.supervisor.enforce_shared_budgets()

    def turn_request(self, agent: AgentRow, turn: TurnRow, limits: TurnLimits | None = None) -> TurnRequest:
        return self.supervisor.turn_request(agent, turn, limits)

    # -- delete ----------------------------------------------------------------------------------------------
    async def delete_agents(self, refs: Sequence[str] | str, *, purge: bool = False) -> list[tuple[AgentRow, int]]:
        """Stop the agents' processes (whole process groups, in parallel) and retire them: (agent, stopped turns)
        each. ``delete`` says what became of their worktrees too."""
        return [(d.agent, d.stopped_turns) for d in await self.delete(refs, purge=purge)]

    async def delete(self, refs: Sequence[str] | str, *, purge: bool = False) -> list[Deleted]:
        """Stop the agents' processes (whole process groups, in parallel) and retire them. An agent's worktree is
        removed; its branch is kept only when it holds unmerged work (``Deleted.worktree`` says so), and ``purge``
        removes it too."""
        if refs == "all" or refs == ["all"]:
            agents = await self.store.list_agents()
        else:
            names = [refs] if isinstance(refs, str) else list(refs)
            if not names:
                raise InvalidRequest('name at least one agent, or pass "all"')
            agents = [await self.get_agent(r) for r in names]  # all-or-nothing: unknown names fail first
        results: list[Deleted] = []

        async def retire(agent: AgentRow) -> None:
            stopped = await self.supervisor.stop_turns(
                agent, status="cancelled", reason="agent deleted", agent_status="deleted"
            )
            await self.store.mark_deleted(agent.id)
            removed = await iso.remove(await self.store.get_agent(agent.id, include_deleted=True) or agent,
                                       purge=purge)  # fmt: skip
            if purge:
                await self.store.purge_agent(agent.id)
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(self.agent_dir(agent.id), ignore_errors=True))
            results.append(Deleted(agent, stopped, removed))
            log.info("agent_deleted", agent=agent.name, agent_id=agent.id, stopped_turns=stopped, purge=purge,
                     branch_kept=removed.branch_kept if removed else None)  # fmt: skip

        async with anyio.create_task_group() as tg:
            for agent in agents:
                tg.start_soon(retire, agent)
        self.notify()
        await self.dispatch()
        return sorted(results, key=lambda r: r.agent.created_at)
