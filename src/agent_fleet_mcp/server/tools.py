"""The 9 tools: module-level handlers taking the typed request Context; reads go through the fleet's reader,
writes through the fleet. ``edge`` turns a FleetError into a ToolError with the same actionable message.

Each tool returns a ``CallToolResult`` typed by its output model (so tools/list keeps the outputSchema): the
structured content is the model compacted (no nulls, zeros, empty lists or defaults) and the text content a terse
rendering of it, never a second copy of the JSON (Claude Code reads the first, Claude Desktop the second)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from agent_fleet_mcp import deprecation, merges
from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.errors import FleetError
from agent_fleet_mcp.fleet import Deleted
from agent_fleet_mcp.reader import BATCH_RESULT_CHARS, FINISHED_SHOWN, STATUS_ROWS
from agent_fleet_mcp.schemas import (
    CommandOut,
    CreateOut,
    DeletedAgent,
    DeleteOut,
    MergeOut,
    Out,
    OutputOut,
    RunAgentsOut,
    StatusOut,
    TaskAgentInfo,
    TaskAgentList,
    WaitOut,
    agent_line,
)  # fmt: skip
from agent_fleet_mcp.server.state import AppState, app_state
from agent_fleet_mcp.spec import Concurrency
from agent_fleet_mcp.waits import MAX_WAIT_S, wait_for

P = ParamSpec("P")
R = TypeVar("R")
DESCRIPTION_CHARS = 110  # a template's description in list_task_agents (its first words)
RESULT_CHARS_MAX = 20_000
LiveStatus = Literal["queued", "running", "idle", "failed", "stopped"]


def edge(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """FleetError -> ToolError with the same actionable message; nothing else is swallowed."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except FleetError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


def reply(out: Out) -> CallToolResult:
    """The compacted structured content and its terse text rendering."""
    return CallToolResult(content=[TextContent(type="text", text=out.render())], structured_content=out.compact())


def _lean(schema: dict[str, Any]) -> None:
    """An input property as the model reads it: no generated title, and an optional value shown as its type (the
    description says what leaving it out means)."""
    schema.pop("title", None)
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        kept: list[Any] = [s for s in any_of if s != {"type": "null"}]  # pyright: ignore[reportUnknownVariableType]
        del schema["anyOf"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
        if schema.get("default", 0) is None:
            del schema["default"]


def arg(description: str, **kw: Any) -> Any:
    """A described tool parameter (its schema lean: see ``_lean``)."""
    info: FieldInfo = Field(description=description, json_schema_extra=_lean, **kw)
    return info


Isolation = Literal["worktree", "none"]
ISOLATION = "worktree: own git branch, merged by merge_agent; none: edit in place (default: worktree if git+readwrite)"


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = arg("template name (list_task_agents)")
    input: str = arg("the task; {{id}} becomes that dependency's full result")
    id: str | None = arg("run id for depends_on/{{id}} (default: template name, -2.. if repeated)", default=None)
    depends_on: list[str] = arg("run ids that must succeed first (default none)", default_factory=list)
    cwd: str | None = arg("working directory (default: the server's project)", default=None)
    isolation: Isolation | None = arg("as in create_agent", default=None)


def _concurrency_text(c: Concurrency) -> str:
    return f"queue (max_queued {c.max_queued})" if c.strategy == "queue" else c.strategy


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0] + "…"


@edge
async def list_task_agents(
    ctx: Context[AppState, Any],
    tags: Annotated[list[str] | None, arg("only templates with all these tags (default: any)")] = None,
    query: Annotated[str | None, arg("words to find in name, description or tags (default: all)")] = None,
) -> Annotated[CallToolResult, TaskAgentList]:
    """List task-agent templates to delegate to (one line each)."""
    fleet = app_state(ctx).fleet
    cat = fleet.catalog()
    found = cat.search(tags=tags, query=query)
    default = _concurrency_text(Concurrency())
    return reply(TaskAgentList(
        agents=[
            TaskAgentInfo(
                name=d.name, description=_short(d.description), tags=list(d.tags), runner=d.spec.runner,
                model=d.spec.model, permission=d.spec.permission,
                concurrency=c if (c := _concurrency_text(d.spec.concurrency)) != default else "queue",
            )
            for d in found
        ],
        problems=[str(p) for p in cat.problems]
        + [str(n) for n in deprecation.definition_notices(cat.definitions.values(), today=fleet.today())],
    ))  # fmt: skip


@edge
async def create_agent(
    ctx: Context[AppState, Any],
    name: Annotated[str, arg("unique agent name, e.g. 'scout-auth'")],
    prompt: Annotated[str | None, arg("first task; starts turn 1 now (default: created idle)")] = None,
    template: Annotated[str | None, arg("catalog template (list_task_agents); default: ad hoc")] = None,
    runner: Annotated[
        str | None, arg("anthropic | claude-code | codex | gemini | command (default: template's, else anthropic)")
    ] = None,
    model: Annotated[str | None, arg("model id (default: template's or runner's)")] = None,
    system_prompt: Annotated[str | None, arg("default: template's")] = None,
    cwd: Annotated[str | None, arg("working directory (default: the server's project)")] = None,
    permission: Annotated[
        Literal["readonly", "readwrite"] | None, arg("file access (default: template's, else readonly)")
    ] = None,
    max_turns: Annotated[int | None, arg("model requests per turn, 1-1000 (default: fleet's)", ge=1, le=1000)] = None,
    max_cost_usd: Annotated[float | None, arg("USD limit over the agent's life, >0 (default: fleet's)", gt=0)] = None,
    timeout_s: Annotated[float | None, arg("seconds per turn, >0 (default: fleet's)", gt=0)] = None,
    idempotency_key: Annotated[str | None, arg("retry-safe key: same key -> same agent (default none)")] = None,
    max_tokens: Annotated[int | None, arg("token limit over the agent's life, >=1 (default none)", ge=1)] = None,
    isolation: Annotated[Isolation | None, arg(ISOLATION)] = None,
) -> Annotated[CallToolResult, CreateOut]:
    """Create an agent (from a template or ad hoc); with a prompt, start it. Retry-safe: the same name and spec
    returns the existing agent."""
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
        note = "created idle; command_agent gives it work"
    else:
        note = f"turn {res.turn.n} {res.turn.status}; wait_for_agents sleeps until it ends"
    if res.warnings:
        note += "; warning: " + "; ".join(res.warnings)
    return reply(CreateOut(
        agent=agent_line(row), created=res.created, turn=res.turn.n if res.turn else None, note=note,
        warnings=list(res.warnings),
    ))  # fmt: skip


@edge
async def command_agent(
    ctx: Context[AppState, Any],
    agent: Annotated[str, arg("agent name")],
    prompt: Annotated[str, arg("the next task (continues its conversation)")],
) -> Annotated[CallToolResult, CommandOut]:
    """Give an agent a new turn. A busy agent queues, rejects or replaces per its template's concurrency."""
    turn = await app_state(ctx).fleet.command_agent(agent, prompt)
    note = "started" if turn.status == "running" else "queued until there is capacity"
    return reply(CommandOut(agent=agent, turn=turn.n, status=turn.status, note=note))


@edge
async def get_agent_status(
    ctx: Context[AppState, Any],
    agents: Annotated[list[str] | None, arg("names: exactly these rows, with detail (default: fleet view)")] = None,
    status: Annotated[list[LiveStatus] | None, arg("page the agents with these statuses (default: all)")] = None,
    limit: Annotated[int, arg(f"max rows, 1-200 (default {STATUS_ROWS})", ge=1, le=200)] = STATUS_ROWS,
    cursor: Annotated[str | None, arg("a next_cursor: pages every agent (default: first view)")] = None,
) -> Annotated[CallToolResult, StatusOut]:
    """Fleet summary plus one row per agent. Default: running, queued, failed and recently changed agents, up to
    limit; not_shown counts the rest."""
    out = await app_state(ctx).reader.status(agents, statuses=status, limit=limit, cursor=cursor)
    return reply(out)


@edge
async def wait_for_agents(
    ctx: Context[AppState, Any],
    agents: Annotated[list[str] | None, arg("names to wait on (default: every agent)")] = None,
    batch: Annotated[str | None, arg("run_agents batch id to wait on instead (default none)")] = None,
    until: Annotated[Literal["all", "any"], arg("all: every one done; any: the first (default all)")] = "all",
    timeout_s: Annotated[float, arg(f"seconds, 0-{MAX_WAIT_S:g} (default 30)", ge=0, le=MAX_WAIT_S)] = 30.0,
    result_chars: Annotated[
        int,
        arg(
            f"batch result preview per run, 0-{RESULT_CHARS_MAX} (default {BATCH_RESULT_CHARS})",
            ge=0,
            le=RESULT_CHARS_MAX,
        ),
    ] = BATCH_RESULT_CHARS,
) -> Annotated[CallToolResult, WaitOut]:
    """Sleep until agents or a batch finish, or timeout_s. Returns what finished (one-line result) and what still
    runs. Cheap: call again instead of polling status."""
    app = app_state(ctx)
    res = await wait_for(
        app.fleet, agents=agents, batch=batch, until=until, timeout_s=timeout_s, progress=ctx.report_progress
    )
    if res.done:
        note = "batch finished" if batch else "done; get_agent_output reads full results"
    else:
        note = f"still running after {res.waited_s:g} s; call wait_for_agents again to keep sleeping"
    if batch:
        view = await app.reader.batch_view(batch, result_chars=result_chars)
        return reply(WaitOut(done=res.done, still_running=res.still_running, waited_s=res.waited_s, batch=view,
                             note=note))  # fmt: skip
    ended = set(res.finished)
    finished, hidden = await app.reader.finished_lines(
        [a for a in res.agents if a.name in ended], limit=None if agents else FINISHED_SHOWN
    )
    return reply(WaitOut(
        done=res.done, finished=finished, finished_not_shown=hidden, still_running=res.still_running,
        waited_s=res.waited_s, note=note,
    ))  # fmt: skip


@edge
async def get_agent_output(
    ctx: Context[AppState, Any],
    agent: Annotated[str, arg("agent name")],
    turn: Annotated[int | None, arg("turn number, >=1 (default: latest)", ge=1)] = None,
    mode: Annotated[
        Literal["result", "tail", "transcript", "diff"],
        arg("result: final answer; tail: live end; transcript: all; diff: worktree vs base (default result)"),
    ] = "result",
    cursor: Annotated[int, arg("char offset, from next_cursor (default 0)", ge=0)] = 0,
    max_chars: Annotated[int, arg("page size, 200-20000 (default 4000)", ge=200, le=20_000)] = 4_000,
) -> Annotated[CallToolResult, OutputOut]:
    """Read an agent's output in bounded pages (deleted, not purged, agents too)."""
    out = await app_state(ctx).reader.output(agent, turn=turn, mode=mode, cursor=cursor, max_chars=max_chars)
    return reply(out)


@edge
async def delete_agent(
    ctx: Context[AppState, Any],
    agents: Annotated[str | list[str], arg('agent name, list of names, or "all"')],
    purge: Annotated[bool, arg("also erase transcripts and history (default false)")] = False,
) -> Annotated[CallToolResult, DeleteOut]:
    """Stop agents (everything their turns started) and retire them."""
    done = await app_state(ctx).fleet.delete(agents, purge=purge)
    return reply(DeleteOut(deleted=[_deleted(d) for d in done], purged=purge))


def _deleted(d: Deleted) -> DeletedAgent:
    """One deleted agent; a worktree branch kept because it holds unmerged work is named, with what to do."""
    kept = d.worktree.note if d.worktree is not None and d.worktree.branch_kept else None
    return DeletedAgent(name=d.agent.name, stopped_turns=d.stopped_turns, branch_kept=kept)


@edge
async def run_agents(
    ctx: Context[AppState, Any],
    runs: Annotated[list[RunIn], arg("the runs; depends_on orders them in waves")],
    wait_s: Annotated[
        float, arg(f"seconds to wait for the batch, 0-{MAX_WAIT_S:g} (default 30)", ge=0, le=MAX_WAIT_S)
    ] = 30.0,
    idempotency_key: Annotated[str | None, arg("retry-safe: same key + runs -> same batch (default none)")] = None,
    budget_usd: Annotated[float | None, arg("USD limit of the whole batch, >0 (default none)", gt=0)] = None,
    result_chars: Annotated[
        int,
        arg(f"result preview per run, 0-{RESULT_CHARS_MAX} (default {BATCH_RESULT_CHARS})", ge=0, le=RESULT_CHARS_MAX),
    ] = BATCH_RESULT_CHARS,
) -> Annotated[CallToolResult, RunAgentsOut]:
    """Delegate tasks to catalog templates in parallel; {{id}} passes a finished run's full result to a dependent.
    Returns each run's status and a result preview, and the batch id for wait_for_agents."""
    app = app_state(ctx)
    batch_id = await app.fleet.batches.start(
        [RunRequest(r.agent, r.input, r.id, tuple(r.depends_on), r.cwd, isolation=r.isolation) for r in runs],
        idempotency_key=idempotency_key,
        budget_usd=budget_usd,
    )
    res = await wait_for(app.fleet, batch=batch_id, timeout_s=wait_s, progress=ctx.report_progress)
    view = await app.reader.batch_view(batch_id, result_chars=result_chars)
    note = (
        "batch finished; get_agent_output reads a run's full result"
        if res.done
        else f"{len(res.still_running)} run(s) still going; wait_for_agents(batch='{batch_id}') to sleep on them"
    )
    return reply(RunAgentsOut(done=res.done, batch=view, note=note))


@edge
async def merge_agent(
    ctx: Context[AppState, Any],
    agent: Annotated[str, arg("agent name")],
    strategy: Annotated[
        Literal["merge", "squash"], arg("merge: a merge commit; squash: uncommitted changes (default merge)")
    ] = "merge",
    dry_run: Annotated[bool, arg("check only, change nothing (default false)")] = False,
) -> Annotated[CallToolResult, MergeOut]:
    """Apply an agent's worktree changes to the checkout it came from. A conflict changes nothing and names the
    files and their cause (other agents, your edits)."""
    app = app_state(ctx)
    return reply(await merges.merge_agent(app.fleet.store, app.reader, agent, strategy=strategy, dry_run=dry_run))


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _writes(*, idempotent: bool = False, destructive: bool = False) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent)


def _description(fn: Callable[..., Any]) -> str:
    """The tool's description: its docstring as one paragraph (no indentation, no line breaks)."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split())


def _add(mcp: MCPServer[AppState], fn: Callable[..., Any], annotations: ToolAnnotations) -> None:
    mcp.add_tool(fn, description=_description(fn), annotations=annotations)
    tool = mcp._tool_manager.get_tool(fn.__name__)  # pyright: ignore[reportPrivateUsage] (the SDK has no public one)
    assert tool is not None
    _untitled(tool.parameters)


def _untitled(schema: dict[str, Any]) -> None:
    """Drops, in place, the titles pydantic derives from parameter and model names (a title only repeats the name
    the model already reads) from a tool's input schema and the schemas nested in it."""
    schema.pop("title", None)
    subs: list[Any] = [schema.get("items")]
    for key in ("properties", "$defs"):
        subs += list(schema.get(key, {}).values())
    for key in ("anyOf", "oneOf", "allOf"):
        subs += list(schema.get(key, []))
    for sub in subs:
        if isinstance(sub, dict):
            _untitled(cast(dict[str, Any], sub))


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
