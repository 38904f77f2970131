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


@pytest.mark.anyio
async def test_the_waves_of_several_batches_start_side_by_side(
    tmp_path: Path, project: Path, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four run_agents calls of 50 at once: each batch's wave is created while the others' are (one lock for every
    batch made them one after another: the last wave began 4.5 s after the first)."""
    async with SqliteStore(tmp_path / "home" / "fleet.db") as store:
        fleet = Fleet(Settings(home=tmp_path / "home", project_dir=project, env=fleet_env), store)
        real_create = fleet.create_agent
        creating: set[str] = set()
        both = anyio.Event()

        async def create_agent(**kw: Any) -> CreateResult:
            creating.add(kw["batch_id"])
            if len(creating) == 2:
                both.set()
            with anyio.fail_after(20):  # one batch after the other, the first waits here for the second in vain
                await both.wait()
            return await real_create(**kw)

        monkeypatch.setattr(fleet, "create_agent", create_agent)
        ids: list[str] = []

        async def start(tag: str) -> None:
            ids.append(await fleet.batches.start([RunRequest("echo", f"{tag} {i}", id=f"r{i}") for i in range(2)]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(start, "a")
            tg.start_soon(start, "b")
        assert len(creating) == 2
        for batch_id in ids:
            runs = await store.runs_of(batch_id)
            assert len(runs) == 2 and all(r.agent_id for r in runs), runs
