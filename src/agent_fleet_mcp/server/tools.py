"""The 9 tools: module-level handlers taking the typed request Context; reads go through the fleet's reader,
writes through the fleet. ``edge`` turns a FleetError into a ToolError with the same actionable message."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from agent_fleet_mcp import deprecation, merges
from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.errors import FleetError
from agent_fleet_mcp.fleet import Deleted
from agent_fleet_mcp.schemas import (
    CommandOut,
    CreateOut,
    DeletedAgent,
    DeleteOut,
    MergeOut,
    OutputOut,
    RunAgentsOut,
    StatusOut,
    TaskAgentInfo,
    TaskAgentList,
    WaitOut,
)  # fmt: skip
from agent_fleet_mcp.server.state import AppState, app_state
from agent_fleet_mcp.spec import Concurrency
from agent_fleet_mcp.waits import MAX_WAIT_S, wait_for

P = ParamSpec("P")
R = TypeVar("R")


def edge(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """FleetError -> ToolError with the same actionable message; nothing else is swallowed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except FleetError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


Isolation = Literal["worktree", "none"]
ISOLATION = "worktree: own git branch, merge_agent applies it (default: readwrite in a repo); none: edit in place"


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="task-agent template name from list_task_agents")
    input: str = Field(description="the task; {{id}} is replaced by that dependency's result")
    id: str | None = Field(None, description="run id for depends_on/{{id}} (default: the template name)")
    depends_on: list[str] = Field(default_factory=list)
    cwd: str | None = None
    isolation: Isolation | None = Field(None, description="as in create_agent")


def _concurrency_text(c: Concurrency) -> str:
    return f"queue (max_queued {c.max_queued})" if c.strategy == "queue" else c.strategy


@edge
async def list_task_agents(
    ctx: Context[AppState, Any], tags: list[str] | None = None, query: str | None = None
) -> TaskAgentList:
    """List task-agent templates (catalog) to delegate to; filter by tags (all must match) or a text query."""
    fleet = app_state(ctx).fleet
    cat = fleet.catalog()
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
        + [str(n) for n in deprecation.definition_notices(cat.definitions.values(), today=fleet.today())],
    )  # fmt: skip


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
    isolation: Annotated[Isolation | None, Field(description=ISOLATION)] = None,
) -> CreateOut:
    """Create an agent (from a template or ad hoc) and, with a prompt, start it. Retry-safe: the same name and
    spec returns the existing agent."""
    app = app_state(ctx)
    res = await app.fleet.create_agent(
        name=name, prompt=prompt, template=template, runner=runner, model=model, system_prompt=system_prompt,
        cwd=cwd, permission=permission, max_turns=max_turns, max_cost_usd=max_cost_usd, timeout_s=timeout_s,
        idempotency_key=idempotency_key, max_tokens=max_tokens, isolation=isolation,
    )  # fmt: skip
    [row] = await app.reader.agent_rows([res.agent])
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


@edge
async def command_agent(ctx: Context[AppState, Any], agent: str, prompt: str) -> CommandOut:
    """Give an existing agent a new task (a new turn continuing its conversation). A busy agent queues, rejects
    or replaces per its template's concurrency strategy."""
    turn = await app_state(ctx).fleet.command_agent(agent, prompt)
    note = "started" if turn.status == "running" else "queued: starts when the agent/fleet has capacity"
    return CommandOut(agent=agent, turn=turn.n, status=turn.status, note=note)


@edge
async def get_agent_status(ctx: Context[AppState, Any], agents: list[str] | None = None) -> StatusOut:
    """Fleet summary plus one compact row per agent: status, current activity, turns, tokens, cost, errors."""
    return await app_state(ctx).reader.status(agents)


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
    app = app_state(ctx)
    res = await wait_for(
        app.fleet, agents=agents, batch=batch, until=until, timeout_s=timeout_s, progress=ctx.report_progress
    )
    rows = await app.reader.agent_rows(res.agents)
    batch_out = await app.reader.batch_view(batch) if batch else None
    if res.done:
        note = "done; read results with get_agent_output" if not batch else "batch finished"
    else:
        note = f"still running after {res.waited_s:g} s; call wait_for_agents again to keep sleeping"
    return WaitOut(
        done=res.done, finished=res.finished, still_running=res.still_running, waited_s=res.waited_s,
        agents=rows, batch=batch_out, note=note,
    )  # fmt: skip


@edge
async def get_agent_output(
    ctx: Context[AppState, Any],
    agent: str,
    turn: Annotated[int | None, Field(ge=1, description="default: latest")] = None,
    mode: Literal["result", "tail", "transcript", "diff"] = "result",
    cursor: Annotated[int, Field(ge=0)] = 0,
    max_chars: Annotated[int, Field(ge=200, le=20_000)] = 4_000,
) -> OutputOut:
    """Read an agent's output in bounded pages: the final result, the live tail, the transcript, or its worktree's
    diff. Works for deleted (not purged) agents too."""
    return await app_state(ctx).reader.output(agent, turn=turn, mode=mode, cursor=cursor, max_chars=max_chars)


@edge
async def delete_agent(
    ctx: Context[AppState, Any],
    agents: Annotated[str | list[str], Field(description='agent name, list of names, or "all"')],
    purge: Annotated[bool, Field(description="also erase transcripts and history")] = False,
) -> DeleteOut:
    """Stop agents (everything their turns started) and retire them."""
    done = await app_state(ctx).fleet.delete(agents, purge=purge)
    return DeleteOut(deleted=[_deleted(d) for d in done], purged=purge)


def _deleted(d: Deleted) -> DeletedAgent:
    """One deleted agent; a worktree branch kept because it holds unmerged work is named, with what to do."""
    kept = d.worktree.note if d.worktree is not None and d.worktree.branch_kept else None
    return DeletedAgent(name=d.agent.name, stopped_turns=d.stopped_turns, branch_kept=kept)


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
    app = app_state(ctx)
    batch_id = await app.fleet.batches.start(
        [RunRequest(r.agent, r.input, r.id, tuple(r.depends_on), r.cwd, isolation=r.isolation) for r in runs],
        idempotency_key=idempotency_key,
        budget_usd=budget_usd,
    )
    res = await wait_for(app.fleet, batch=batch_id, timeout_s=wait_s, progress=ctx.report_progress)
    view = await app.reader.batch_view(batch_id)
    note = (
        "batch finished"
        if res.done
        else f"{len(res.still_running)} run(s) still going; wait_for_agents(batch='{batch_id}') to sleep on them"
    )
    return RunAgentsOut(done=res.done, batch=view, note=note)


@edge
async def merge_agent(
    ctx: Context[AppState, Any],
    agent: Annotated[str, Field(description="agent name")],
    strategy: Annotated[
        Literal["merge", "squash"], Field(description="merge: a merge commit; squash: uncommitted changes")
    ] = "merge",
    dry_run: Annotated[bool, Field(description="check only, change nothing")] = False,
) -> MergeOut:
    """Apply an agent's worktree changes to the checkout it came from. A conflict changes nothing and names the
    files and their cause (other agents, your edits)."""
    app = app_state(ctx)
    return await merges.merge_agent(app.fleet.store, app.reader, agent, strategy=strategy, dry_run=dry_run)


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _writes(*, idempotent: bool = False, destructive: bool = False) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent)


def _description(fn: Callable[..., Any]) -> str:
    """The tool's description: its docstring with continuation lines indented by 8 spaces, as the raw docstrings
    read when these handlers were nested in build_server (the descriptions are part of the contract; this keeps
    them byte for byte whatever a formatter does to the docstrings)."""
    return inspect.cleandoc(fn.__doc__ or "").replace("\n", "\n        ")


def _add(mcp: MCPServer[AppState], fn: Callable[..., Any], annotations: ToolAnnotations) -> None:
    mcp.add_tool(fn, description=_description(fn), annotations=annotations)


def register(mcp: MCPServer[AppState]) -> None:
    """The tools in the order tools/list shows them."""
    _add(mcp, list_task_agents, READ_ONLY)
    _add(mcp, create_agent, _writes(idempotent=True))
    _add(mcp, command_agent, _writes())
    _add(mcp, get_agent_status, READ_ONLY)
    _add(mcp, wait_for_agents, READ_ONLY)
    _add(mcp, get_agent_output, READ_ONLY)
    _add(mcp, delete_agent, _writes(destructive=True))
    _add(mcp, run_agents, _writes())
    _add(mcp, merge_agent, _writes(destructive=True))
