"""run_agents: a readwrite run that depends on a readwrite run starts from that run's branch (its edits carry on);
parallel readwrite runs each get their own worktree; a run may ask for isolation none."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.waits import wait_for

from .conftest import git

pytestmark = pytest.mark.anyio


async def test_a_chained_run_starts_from_its_dependencys_branch(fleet: Fleet, repo: Path) -> None:
    batch = await fleet.batches.start([
        RunRequest("editor", "append chain.txt from a", "a"),
        RunRequest("editor", "append chain.txt from b", "b", ("a",)),
        RunRequest("editor", "append chain.txt from c", "c"),
        # after c: an edit in the checkout itself, made while c's worktree was being created, would be in c's base
        RunRequest("editor", "append inplace.txt from d", "d", ("c",), isolation="none"),
    ])  # fmt: skip
    res = await wait_for(fleet, batch=batch, timeout_s=90)
    assert res.done
    runs = {r.run_id: r for r in await fleet.store.runs_of(batch)}
    assert all(r.status == "succeeded" for r in runs.values()), runs
    agents = {rid: await fleet.store.get_agent(r.agent_id or "") for rid, r in runs.items()}
    a, b, c, d = (agents[k] for k in "abcd")
    assert a and b and c and d and a.workspace and b.workspace and c.workspace and d.workspace is None
    assert len({a.workspace.path, b.workspace.path, c.workspace.path}) == 3
    a_turn = git(repo, "rev-parse", f"{a.workspace.branch}")
    assert b.workspace.base == a_turn  # b started from a's committed turn
    assert Path(b.workspace.path, "chain.txt").read_text() == "from a\nfrom b\n"
    assert Path(c.workspace.path, "chain.txt").read_text() == "from c\n"  # parallel: from the checkout
    assert c.workspace.base == git(repo, "rev-parse", "HEAD")
    assert not (repo / "chain.txt").exists() and (repo / "inplace.txt").read_text() == "from d\n"
    assert b.changes is not None and b.changes.files == ("chain.txt",) and b.changes.added == 1


async def test_a_bad_isolation_in_a_run_starts_nothing(fleet: Fleet) -> None:
    with pytest.raises(Exception, match="isolation must be one of worktree, none"):
        await fleet.batches.start([RunRequest("editor", "x", "a", isolation="container")])
    assert await fleet.store.list_batches() == []
