"""The MCP surface: exactly 8 tools, 3 prompts, 2 resources. Thin: validate, call the fleet, shape the output,
turn FleetError into ToolError (a message the model can act on)."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import anyio
import structlog
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from agent_fleet_mcp import __version__, deprecation, logs, private, prompts, views
from agent_fleet_mcp.arguments import ArgumentCheckingServer
from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import FleetError, NotFound
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.schemas import (
    CommandOut,
    CreateOut,
    DeletedAgent,
    DeleteOut,
    OutputOut,
    RunAgentsOut,
    StatusOut,
    TaskAgentInfo,
    TaskAgentList,
    WaitOut,
)  # fmt: skip
from agent_fleet_mcp.spec import Concurrency
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.waits import MAX_WAIT_S, wait_for

INSTRUCTIONS = (
    "Orchestrate a fleet of AI agents without filling your context: create or delegate (run_agents), then sleep "
    "with wait_for_agents, check get_agent_status, read bounded results with get_agent_output, and delete_agent "
    "when done. Calls never block more than 45 s; call wait_for_agents again while agents still run."
)

RESOURCE_NOTIFY_S = 0.5
FILES_SHOWN = 20
log = structlog.get_logger("agent_fleet.server")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppState:
    fleet: Fleet


def edge(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """FleetError -> ToolError with the same actionable message; nothing else is swallowed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except FleetError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="task-agent template name from list_task_agents")
    input: str = Field(description="the task; {{id}} is replaced by that dependency's result")
    id: str | None = Field(None, description="run id for depends_on/{{id}} (default: the template name)")
    depends_on: list[str] = Field(default_factory=list)
    cwd: str | None = None


async def publish_changes(fleet: Fleet, bus: InMemorySubscriptionBus) -> None:
    """Resource change notifications (subscriptions/listen): fleet://agents and fleet://agents/{name} are
    announced when an agent's status, turn, activity or usage changes; at most every RESOURCE_NOTIFY_S."""
    last: dict[str, tuple[object, ...]] = {}
    while True:
        await fleet.changed(RESOURCE_NOTIFY_S * 2)
        try:
            rows = await views.agent_rows(fleet, await fleet.store.list_agents())
        except Exception:  # never let notifications take the server down; the next change retries
            log.exception("resource_notify_failed")
            rows = []
        now: dict[str, tuple[object, ...]] = {
            r.name: (r.status, r.turn, r.turn_status, r.activity, r.tool_calls, r.tokens.output) for r in rows
        }
        changed = sorted(n for n in now.keys() | last.keys() if now.get(n) != last.get(n))
        if changed:
            await bus.publish(ResourceUpdated(uri="fleet://agents"))
            for name in changed:
                await bus.publish(ResourceUpdated(uri=f"fleet://agents/{name}"))
        last = now
        await anyio.sleep(RESOURCE_NOTIFY_S)


def _concurrency_text(c: Concurrency) -> str:
    return f"queue (max_queued {c.max_queued})" if c.strategy == "queue" else c.strategy


def _secure_home(home: Path) -> None:
    """The fleet home is private (private.py): create it 0700, or tighten one others can read, and say so."""
    changed = private.secure_home(home)
    if changed:
        log.warning(
            "home_tightened", home=str(home), entries=len(changed), examples=[str(p) for p in changed[:5]],
            note="removed group/other permissions: prompts, transcripts and fleet.db are private to you",
        )  # fmt: skip


def build_server(settings: Settings | None = None) -> MCPServer[AppState]:
    logs.ensure_configured()
    live: list[Fleet] = []  # the running fleet, for static resources (they get no Context)

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        cfg = settings or Settings.from_env()
        await anyio.to_thread.run_sync(_secure_home, cfg.home)
        async with SqliteStore(cfg.db_path) as store:
            fleet = Fleet(cfg, store)
            async with fleet.running(), anyio.create_task_group() as tg:
                live.append(fleet)
                tg.start_soon(publish_changes, fleet, bus)
                try:
                    yield AppState(fleet)
                finally:
                    live.remove(fleet)
                    tg.cancel_scope.cancel()

    bus = InMemorySubscriptionBus()
    mcp: MCPServer[AppState] = ArgumentCheckingServer(
        "agent-fleet", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING",
        subscriptions=bus,
    )  # fmt: skip

    def fleet_of(ctx: Context[AppState, Any]) -> Fleet:
        return ctx.request_context.lifespan_context.fleet

    ro = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

    @mcp.tool(annotations=ro)
    @edge
    async def list_task_agents(
        ctx: Context[AppState, Any], tags: list[str] | None = None, query: str | None = None
    ) -> TaskAgentList:
        """List task-agent templates (catalog) to delegate to; filter by tags (all must match) or a text query."""
        cat = fleet_of(ctx).catalog()
        found = cat.search(tags=tags, query=query)
        return TaskAgentList(
            agents=[
                TaskAgentInfo(
                    name=d.name, description=d.description, tags=list(d.tags), runner=d.spec.runner,
                    model=d.spec.model, permission=d.spec.permission,
                    concurrency=_concurrency_text(d.spec.concurrency),
                )
                for d in found
            ],
            problems=[str(p) for p in cat.problems]
            + [str(n) for n in deprecation.definition_notices(cat.definitions.values(), today=fleet_of(ctx).today())],
        )  # fmt: skip

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    @edge
    async def create_agent(
        ctx: Context[AppState, Any],
        name: Annotated[str, Field(description="unique agent name, e.g. 'scout-auth'")],
        prompt: Annotated[str | None, Field(description="first task; starts turn 1 now")] = None,
        template: Annotated[str | None, Field(description="catalog template (list_task_agents)")] = None,
        runner: Annotated[str | None, Field(description="anthropic | claude-code | codex | gemini")] = None,
        model: str | None = None,
        system_prompt: str | None = None,
        cwd: Annotated[str | None, Field(description="working directory (default: server's project)")] = None,
        permission: Literal["readonly", "readwrite"] | None = None,
        max_turns: Annotated[int | None, Field(ge=1, le=1000)] = None,
        max_cost_usd: Annotated[
            float | None, Field(gt=0, description="cost limit of the agent's whole life (default: the fleet's)")
        ] = None,
        timeout_s: Annotated[float | None, Field(gt=0, description="wall-clock limit of one turn")] = None,
        idempotency_key: str | None = None,
        max_tokens: Annotated[
            int | None, Field(ge=1, description="token limit (input+output+cache) of the agent's whole life")
        ] = None,
    ) -> CreateOut:
        """Create an agent (from a template or ad hoc) and, with a prompt, start it. Retry-safe: the same name and
        spec returns the existing agent."""
        fleet = fleet_of(ctx)
        res = await fleet.create_agent(
            name=name, prompt=prompt, template=template, runner=runner, model=model, system_prompt=system_prompt,
            cwd=cwd, permission=permission, max_turns=max_turns, max_cost_usd=max_cost_usd, timeout_s=timeout_s,
            idempotency_key=idempotency_key, max_tokens=max_tokens,
        )  # fmt: skip
        [row] = await views.agent_rows(fleet, [res.agent])
        if not res.created:
            note = "already existed with this spec; nothing new started"
        elif res.turn is None:
            note = "created idle; use command_agent to give it work"
        else:
            note = f"turn {res.turn.n} {res.turn.status}; wait_for_agents to sleep until it finishes"
        if res.warnings:
            note += "; warning: " + "; ".join(res.warnings)
        return CreateOut(
            agent=row, created=res.created, turn=res.turn.n if res.turn else None, note=note,
            warnings=list(res.warnings),
        )  # fmt: skip

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @edge
    async def command_agent(ctx: Context[AppState, Any], agent: str, prompt: str) -> CommandOut:
        """Give an existing agent a new task (a new turn continuing its conversation). A busy agent queues, rejects
        or replaces per its template's concurrency strategy."""
        turn = await fleet_of(ctx).command_agent(agent, prompt)
        note = "started" if turn.status == "running" else "queued: starts when the agent/fleet has capacity"
        return CommandOut(agent=agent, turn=turn.n, status=turn.status, note=note)

    @mcp.tool(annotations=ro)
    @edge
    async def get_agent_status(ctx: Context[AppState, Any], agents: list[str] | None = None) -> StatusOut:
        """Fleet summary plus one compact row per agent: status, current activity, turns, tokens, cost, errors."""
        fleet = fleet_of(ctx)
        rows = [await fleet.get_agent(a) for a in agents] if agents else await fleet.store.list_agents()
        out = await views.agent_rows(fleet, rows)
        all_rows = out if not agents else await views.agent_rows(fleet, await fleet.store.list_agents())
        return StatusOut(fleet=views.fleet_summary(all_rows), agents=out)

    @mcp.tool(annotations=ro)
    @edge
    async def wait_for_agents(
        ctx: Context[AppState, Any],
        agents: list[str] | None = None,
        batch: str | None = None,
        until: Literal["all", "any"] = "all",
        timeout_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 30.0,
    ) -> WaitOut:
        """Sleep until the agents (default: all) or a run_agents batch finish, or timeout_s (max 45). Cheap: call
        it repeatedly instead of polling status."""
        fleet = fleet_of(ctx)
        res = await wait_for(
            fleet, agents=agents, batch=batch, until=until, timeout_s=timeout_s, progress=ctx.report_progress
        )
        rows = await views.agent_rows(fleet, res.agents)
        batch_out = await views.batch_view(fleet, batch) if batch else None
        if res.done:
            note = "done; read results with get_agent_output" if not batch else "batch finished"
        else:
            note = f"still running after {res.waited_s:g} s; call wait_for_agents again to keep sleeping"
        return WaitOut(
            done=res.done, finished=res.finished, still_running=res.still_running, waited_s=res.waited_s,
            agents=rows, batch=batch_out, note=note,
        )  # fmt: skip

    @mcp.tool(annotations=ro)
    @edge
    async def get_agent_output(
        ctx: Context[AppState, Any],
        agent: str,
        turn: Annotated[int | None, Field(ge=1, description="default: latest")] = None,
        mode: Literal["result", "tail", "transcript"] = "result",
        cursor: Annotated[int, Field(ge=0)] = 0,
        max_chars: Annotated[int, Field(ge=200, le=20_000)] = 4_000,
    ) -> OutputOut:
        """Read an agent's output in bounded pages: the final result, the live tail, or the transcript. Works for
        deleted (not purged) agents too."""
        fleet = fleet_of(ctx)
        row = await fleet.get_agent(agent, include_deleted=True)
        turns = await fleet.store.turns_of(row.id)
        if not turns:
            raise NotFound(f"agent {agent!r} has no turns yet; command_agent gives it work")
        t = turns[-1] if turn is None else next((x for x in turns if x.n == turn), None)
        if t is None:
            raise NotFound(f"agent {agent!r} has turns 1..{turns[-1].n}; no turn {turn}")
        path = str(fleet.turn_files(row.id, t.n).out)
        if mode == "result":
            if t.done:
                text = t.result_text or (f"(no result text; {t.status}: {t.error or t.reason})" if t.error else "")
            else:
                text = f"(turn {t.n} is {t.status}; no result yet. Use mode='tail' for live progress.)"
            chunk, more, nxt = views.page(text, cursor, max_chars)
        elif mode == "tail":
            text = await views.transcript_text(fleet, row, t)
            chunk, more, nxt = text[-max_chars:], len(text) > max_chars, None
        else:
            text = await views.transcript_text(fleet, row, t)
            chunk, more, nxt = views.page(text, cursor, max_chars)
        return OutputOut(
            agent=row.name, turn=t.n, turn_status=t.status, mode=mode, text=chunk, truncated=more, next_cursor=nxt,
            total_chars=len(text), transcript_path=path, files_read=t.reads[:FILES_SHOWN],
            files_written=t.writes[:FILES_SHOWN], reads_total=len(t.reads), writes_total=len(t.writes),
        )  # fmt: skip

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False))
    @edge
    async def delete_agent(
        ctx: Context[AppState, Any],
        agents: Annotated[str | list[str], Field(description='agent name, list of names, or "all"')],
        purge: Annotated[bool, Field(description="also erase transcripts and history")] = False,
    ) -> DeleteOut:
        """Stop agents (everything their turns started) and retire them."""
        done = await fleet_of(ctx).delete_agents(agents, purge=purge)
        return DeleteOut(deleted=[DeletedAgent(name=a.name, stopped_turns=n) for a, n in done], purged=purge)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @edge
    async def run_agents(
        ctx: Context[AppState, Any],
        runs: list[RunIn],
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 30.0,
        idempotency_key: Annotated[str | None, Field(description="retry-safe: same key + runs -> same batch")] = None,
        budget_usd: Annotated[
            float | None, Field(gt=0, description="cost limit of the whole batch; runs stop once it is spent")
        ] = None,
    ) -> RunAgentsOut:
        """Delegate tasks to catalog task agents in parallel; depends_on orders them in waves and {{id}} passes a
        finished run's result on. Returns finished results and a batch id for wait_for_agents(batch=...)."""
        fleet = fleet_of(ctx)
        batch_id = await fleet.batches.start(
            [RunRequest(r.agent, r.input, r.id, tuple(r.depends_on), r.cwd) for r in runs],
            idempotency_key=idempotency_key,
            budget_usd=budget_usd,
        )
        res = await wait_for(fleet, batch=batch_id, timeout_s=wait_s, progress=ctx.report_progress)
        view = await views.batch_view(fleet, batch_id)
        note = (
            "batch finished"
            if res.done
            else f"{len(res.still_running)} run(s) still going; wait_for_agents(batch='{batch_id}') to sleep on them"
        )
        return RunAgentsOut(done=res.done, batch=view, note=note)

    @mcp.resource("fleet://agents", name="fleet", description="Fleet summary and one row per agent (JSON)",
                  mime_type="application/json")  # fmt: skip
    async def fleet_resource() -> str:
        if not live:
            raise ResourceError("the fleet is not running")
        fleet = live[-1]
        rows = await views.agent_rows(fleet, await fleet.store.list_agents())
        return StatusOut(fleet=views.fleet_summary(rows), agents=rows).model_dump_json()

    @mcp.resource("fleet://agents/{agent}", name="agent", description="One agent: status and recent activity (JSON)",
                  mime_type="application/json")  # fmt: skip
    async def agent_resource(agent: str, ctx: Context[AppState, Any]) -> str:
        fleet = fleet_of(ctx)
        try:
            row = await fleet.get_agent(agent)
        except FleetError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        [status] = await views.agent_rows(fleet, [row])
        turns = await fleet.store.turns_of(row.id)
        recent = ""
        if turns:
            recent = (await views.transcript_text(fleet, row, turns[-1]))[-views.RECENT_ACTIVITY_CHARS :]
        return json.dumps({"status": status.model_dump(mode="json"), "recent_activity": recent})

    prompts.register(mcp)
    return mcp
