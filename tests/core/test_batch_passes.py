"""A batch's pass costs one narrow read while nothing it waits on changed (a batch is looked at on every change of
the fleet), and still closes every run that has to be closed: a turn that ended, a dependency that failed while
another still runs, an agent purged from under its run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.models import RunRow
from agent_fleet_mcp.testing.fake_runner import FakeRunner
from agent_fleet_mcp.waits import wait_for

from .test_fleet_logic import fleets, turn_of, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def roomy(settings: Settings) -> Settings:
    return replace(settings, poll_interval_s=0.01, max_concurrent=8)


async def run_of(fleet: Fleet, batch: str, run_id: str) -> RunRow:
    return next(r for r in await fleet.store.runs_of(batch) if r.run_id == run_id)


async def run_settled(fleet: Fleet, batch: str, run_id: str, status: str) -> RunRow:
    async def check() -> bool:
        await fleet.batches.advance(batch)
        return (await run_of(fleet, batch, run_id)).status == status

    await until(check, f"run {run_id} {status}")
    return await run_of(fleet, batch, run_id)


async def test_a_pass_reads_no_run_while_no_turn_ended(roomy: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner()
    async with fleets(roomy, fake) as (fleet,):
        batch = await fleet.batches.start([RunRequest("echo", f"task {i}", f"r{i}") for i in range(3)])
        turns = [await fake.wait_started(f"r{i}-{batch[2:]}", 1) for i in range(3)]
        reads = 0
        real_runs_of = fleet.store.runs_of

        async def counting_runs_of(batch_id: str) -> list[RunRow]:
            nonlocal reads
            reads += 1
            return await real_runs_of(batch_id)

        monkeypatch.setattr(fleet.store, "runs_of", counting_runs_of)
        for _ in range(5):
            await fleet.batches.advance(batch)
        assert reads == 0, f"{reads} full reads of the batch while none of its turns ended"
        turns[1].succeed("one done")
        assert (await run_settled(fleet, batch, "r1", "succeeded")).status == "succeeded"
        assert reads >= 1
        assert [(await run_of(fleet, batch, f"r{i}")).status for i in (0, 2)] == ["running", "running"]
        for t in (turns[0], turns[2]):
            t.succeed("done")
        await run_settled(fleet, batch, "r2", "succeeded")
        await run_settled(fleet, batch, "r0", "succeeded")
        batch_row = await fleet.store.get_batch(batch)
        assert batch_row is not None and batch_row.status == "succeeded"


async def test_a_failed_dependency_fails_its_dependent_while_another_still_runs(roomy: Settings) -> None:
    fake = FakeRunner()
    async with fleets(roomy, fake) as (fleet,):
        runs = [RunRequest("echo", "a", "a"), RunRequest("echo", "b", "b")]
        batch = await fleet.batches.start([*runs, RunRequest("echo", "{{a}} {{b}}", "c", ("a", "b"))])
        a = await fake.wait_started(f"a-{batch[2:]}", 1)
        await fake.wait_started(f"b-{batch[2:]}", 1)
        a.fail()
        c = await run_settled(fleet, batch, "c", "failed")
        assert c.reason is not None and "dependency 'a' failed" in c.reason
        assert (await run_of(fleet, batch, "b")).status == "running"


async def test_a_run_whose_agent_was_purged_is_closed(roomy: Settings) -> None:
    fake = FakeRunner()
    async with fleets(roomy, fake) as (fleet,):
        batch = await fleet.batches.start([RunRequest("echo", "task", "r")])
        await fake.wait_started(f"r-{batch[2:]}", 1)
        await fleet.delete([f"r-{batch[2:]}"], purge=True)
        run = await run_settled(fleet, batch, "r", "failed")
        assert run.agent_id is None and run.reason == "agent deleted"
        batch_row = await fleet.store.get_batch(batch)
        assert batch_row is not None and batch_row.status == "failed"


async def test_a_batch_wait_reports_what_its_busiest_run_is_doing(roomy: Settings) -> None:
    fake = FakeRunner()
    async with fleets(roomy, fake) as (fleet,):
        batch = await fleet.batches.start([RunRequest("echo", "task", "r"), RunRequest("echo", "later", "s", ("r",))])
        agent = f"r-{batch[2:]}"
        turn = await fake.wait_started(agent, 1)
        turn.emit("tool_use", name="read", summary="read README.md", reads=["README.md"])

        async def recorded() -> bool:
            return (await turn_of(fleet, agent, 1)).activity is not None

        await until(recorded, "the run's activity recorded")
        said: list[str] = []

        async def progress(done: float, total: float | None, message: str) -> None:
            said.append(message)

        res = await wait_for(fleet, batch=batch, timeout_s=0.2, progress=progress)
        assert not res.done and res.finished == [] and res.still_running == ["r", "s"]
        assert said and said[0].startswith(f"0/2 done — {agent}: "), said
        turn.succeed("done")
        await fake.wait_started(f"s-{batch[2:]}", 1)
        res = await wait_for(fleet, batch=batch, timeout_s=0.2)
        assert res.finished == ["r"] and res.still_running == ["s"]
