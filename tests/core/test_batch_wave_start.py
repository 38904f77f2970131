"""A wave of run_agents starts side by side: every run's create_agent is in flight at once (each one waits for its
turn to be spawned, so one after another they added up to seconds for a big wave)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import CreateResult, Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore

RUNS = 6


@pytest.mark.anyio
async def test_a_waves_runs_are_created_at_once(
    tmp_path: Path, project: Path, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore(tmp_path / "home" / "fleet.db") as store:
        fleet = Fleet(Settings(home=tmp_path / "home", project_dir=project, env=fleet_env), store)
        real_create = fleet.create_agent
        in_flight = peak = 0
        all_in = anyio.Event()

        async def create_agent(**kw: Any) -> CreateResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if peak == RUNS:
                all_in.set()
            with anyio.fail_after(20):  # one after another, the first waits here for the others in vain
                await all_in.wait()
            try:
                return await real_create(**kw)
            finally:
                in_flight -= 1

        monkeypatch.setattr(fleet, "create_agent", create_agent)
        batch_id = await fleet.batches.start([RunRequest("echo", f"run {i}", id=f"r{i}") for i in range(RUNS)])
        assert peak == RUNS, f"at most {peak} of the wave's {RUNS} runs were being created at once"
        runs = await store.runs_of(batch_id)
        assert len(runs) == RUNS and all(r.agent_id for r in runs), runs
