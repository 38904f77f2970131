"""The MCP server: its lifespan (store, fleet, reader, resource notifications) and ``build_server``, which
registers the tools (tools.py), resources (resources.py) and prompts (prompts.py) on a new ``MCPServer``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import structlog
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent

from agent_fleet_mcp import __version__, catalog, deprecation, logs, private, runners
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.runners import containment, forkserver
from agent_fleet_mcp.server import prompts, resources, tools
from agent_fleet_mcp.server.arguments import ArgumentCheckingServer
from agent_fleet_mcp.server.state import AppState, RunningApp
from agent_fleet_mcp.store.sqlite import SqliteStore

INSTRUCTIONS = (
    "Orchestrate a fleet of AI agents without filling your context: create or delegate (run_agents), then sleep "
    "with wait_for_agents, check get_agent_status, read bounded results with get_agent_output, and delete_agent "
    "when done. Calls never block more than 45 s; call wait_for_agents again while agents still run."
)

RESOURCE_NOTIFY_S = 0.5
log = structlog.get_logger("agent_fleet.server")


class FleetBus(InMemorySubscriptionBus):
    """The SDK's in-process subscription bus, counting its listeners: with none (no client listens to resource
    changes, as in most hosts), ``publish_changes`` reads no row at all. It read every agent's row twice a second
    while turns ran: 10 % of the server's CPU with 200 agents."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = 0

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        self.listeners += 1
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                self.listeners -= 1
            unsubscribe()

        return once


async def publish_changes(fleet: Fleet, bus: FleetBus) -> None:
    """Resource change notifications (subscriptions/listen): fleet://agents and fleet://agents/{name} are
    announced when an agent's status, turn, activity or usage changes; at most every RESOURCE_NOTIFY_S. While the
    store is unchanged (``Store.change_stamp``) or nobody listens, no row is read: an idle server with a long queue
    stays idle, and a busy one spends nothing on notifications no client asked for."""
    last: dict[str, tuple[object, ...]] = {}
    seen: tuple[int, int] | None = None
    while True:
        await fleet.stirred(RESOURCE_NOTIFY_S * 2)  # usage changes are announced too
        if not bus.listeners:
            await anyio.sleep(RESOURCE_NOTIFY_S)
            continue
        try:
            stamp = await fleet.store.change_stamp()
            if stamp == seen:
                await anyio.sleep(RESOURCE_NOTIFY_S)
                continue
            rows = await fleet.reader.agent_rows(await fleet.reader.list_agents())
            seen = stamp
        except Exception:  # never let notifications take the server down; the next change retries
            log.exception("resource_notify_failed")
            rows, seen = [], None
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


async def warm_forkserver(cfg: Settings) -> None:
    """Start the home's fork server now (docs/forkserver.md), so the first turns find it preloaded."""
    try:
        spares = forkserver.spares_from(cfg.env, cap=cfg.max_concurrent)
        launched = await anyio.to_thread.run_sync(
            lambda: forkserver.warm(cfg.home, cfg.env, spares=spares), abandon_on_cancel=True
        )
    except Exception:  # a cold fork server only costs the first turn time; never the server
        log.exception("forkserver_warm_failed")
        return
    log.info("forkserver_warm", home=str(cfg.home), launched=launched)


def _warm_first_call(cfg: Settings, *, supervises: bool) -> None:
    """What the first tool call would otherwise pay (~0.2 s on 2 cores): the runner backends' imports, the SDK's
    model end-of-life table (read from its source) and the parsed catalog (kept while its files do not change); in
    a server that starts turns, also the containment probe its first spawn needs (a cgroup probe and an
    ``unshare`` subprocess, ~40 ms) and the home's guarded files (in a new home, each spawn of the first wave
    raced to create the HTTP token file, with an fsync each). Run in the background; a failure only costs that
    time."""
    runners.preload_all()
    deprecation.sdk_table()
    catalog.load_catalog(cfg.project_dir, cfg.env)
    if supervises and containment.detect().unshare is not None:
        containment.home_guards(cfg.home)


async def warm_first_call(cfg: Settings, *, supervises: bool) -> None:
    try:
        await anyio.to_thread.run_sync(lambda: _warm_first_call(cfg, supervises=supervises), abandon_on_cancel=True)
    except Exception:
        log.exception("warm_first_call_failed")


def _secure_home(home: Path) -> None:
    """The fleet home is private (private.py): create it 0700, or tighten one others can read, and say so."""
    changed = private.secure_home(home)
    if changed:
        log.warning(
            "home_tightened", home=str(home), entries=len(changed), examples=[str(p) for p in changed[:5]],
            note="removed group/other permissions: prompts, transcripts and fleet.db are private to you",
        )  # fmt: skip


@asynccontextmanager
async def lifespan(
    settings: Settings | None, bus: FleetBus, running: RunningApp
) -> AsyncGenerator[AppState]:
    """Open the store, run the fleet and the change notifications; the state is also put in ``running``."""
    cfg = settings or Settings.from_env()
    await anyio.to_thread.run_sync(_secure_home, cfg.home)
    async with SqliteStore(cfg.db_path) as store:
        fleet = Fleet(cfg, store)
        async with fleet.running(), anyio.create_task_group() as tg:
            tg.start_soon(publish_changes, fleet, bus)
            tg.start_soon(partial(warm_first_call, cfg, supervises=fleet.supervises))  # in the background
            if fleet.supervises and forkserver.warm_wanted(cfg.env):
                tg.start_soon(warm_forkserver, cfg)  # in the background: `initialize` never waits for it
            state = AppState(fleet, fleet.reader)
            running.state = state
            try:
                yield state
            finally:
                running.state = None
                tg.cancel_scope.cancel()


def build_server(settings: Settings | None = None) -> MCPServer[AppState]:
    logs.ensure_configured()
    bus = FleetBus()
    running = RunningApp()

    def server_lifespan(_: MCPServer[AppState]) -> AbstractAsyncContextManager[AppState]:
        return lifespan(settings, bus, running)

    mcp: MCPServer[AppState] = ArgumentCheckingServer(
        "agent-fleet", version=__version__, instructions=INSTRUCTIONS, lifespan=server_lifespan,
        log_level="WARNING", subscriptions=bus,
    )  # fmt: skip
    tools.register(mcp)
    resources.register(mcp, running)
    prompts.register(mcp)
    return mcp
