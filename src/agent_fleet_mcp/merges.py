"""merge_agent: apply an isolated agent's changes (its worktree branch, base .. tip) to the checkout it started
from. The git work is worktrees.merge (a conflict changes nothing in the checkout); this module adds the fleet's
part: refuse while the agent works, name the other live agents whose changes touch the conflicting files, and
record ``merged_at``. Write side: the edge (server/tools.py) only shapes arguments and errors."""

from __future__ import annotations

import time
from typing import Literal

from agent_fleet_mcp import worktrees
from agent_fleet_mcp.errors import Conflict
from agent_fleet_mcp.reader import FleetReader, no_worktree
from agent_fleet_mcp.reader_models import caused_by
from agent_fleet_mcp.schemas import MergeOut
from agent_fleet_mcp.store.protocol import Store

Strategy = Literal["merge", "squash"]


async def merge_agent(
    store: Store, reader: FleetReader, ref: str, *, strategy: Strategy, dry_run: bool
) -> MergeOut:
    agent = await reader.get_agent(ref)
    ws = agent.workspace
    if ws is None:
        raise no_worktree(agent)
    if await reader.busy([agent.id]):
        raise Conflict(
            f"agent {agent.name!r} is still working; wait_for_agents(agents=[{agent.name!r}]) until it is idle, "
            "then merge_agent again (its changes are committed after each turn)"
        )
    await worktrees.ensure(ws)  # its dir deleted or unregistered since its last turn: re-made from its branch
    res = await worktrees.merge(ws, strategy=strategy, dry_run=dry_run)
    if res.merged:
        await store.set_merged(agent.id, time.time())
    if not dry_run:  # the merge committed any pending work: the stored changes catch up with the branch
        await store.set_changes(agent.id, await worktrees.changes(ws))
    others = {
        a.name: a.changes.files
        for a in await store.isolated_agents()
        if a.id != agent.id and a.changes is not None and a.status != "deleted"
    }
    causes = caused_by(res.conflicts, others)
    note = res.message
    if causes:
        named = sorted({name for names in causes.values() for name in names})
        note += f" (other agents that changed those files: {', '.join(named)}; see caused_by)"
    return MergeOut(
        agent=agent.name, merged=res.merged, dry_run=res.dry_run, strategy=res.strategy,
        files=[] if res.conflicts else list(res.files), added=res.added, removed=res.removed,
        conflicts=list(res.conflicts), caused_by=causes, user_edits=list(res.user_edits), commit=res.commit,
        note=note,
    )  # fmt: skip
