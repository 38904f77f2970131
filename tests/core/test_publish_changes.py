"""Resource change notifications cost nothing while the store is unchanged: publish_changes reads no agent row until
``Store.change_stamp`` moves (an idle server with a long queue stays idle), and reads them again once it does. With
no client listening, it reads no row at all, however much changes."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.reader_models import AgentRowOut
from agent_fleet_mcp.server import app
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.store.models import AgentRow
from agent_fleet_mcp.store.sqlite import SqliteStore


async def _until(pred: object, what: str, deadline_s: float = 30.0) -> None:
    assert callable(pred)
    with anyio.fail_after(deadline_s):
        while not pred():
            await anyio.sleep(0.005)


class Counts:
    """How many passes ``publish_changes`` made (its waits for a change) and how often it read the agents' rows."""

    def __init__(self, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passes = self.rows_read = 0
        real_stirred, real_rows = fleet.stirred, fleet.reader.agent_rows

        async def counting_stirred(within_s: float) -> None:
            self.passes += 1
            await real_stirred(within_s)

        async def counting_rows(agents: list[AgentRow]) -> list[AgentRowOut]:
            self.rows_read += 1
            return await real_rows(agents)

        monkeypatch.setattr(fleet, "stirred", counting_stirred)
        monkeypatch.setattr(fleet.reader, "agent_rows", counting_rows)


@pytest.mark.anyio
async def test_no_rows_read_while_the_store_is_unchanged(
    tmp_path: Path, project: Path, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "RESOURCE_NOTIFY_S", 0.001)
    async with SqliteStore(tmp_path / "home" / "fleet.db") as store:
        fleet = Fleet(Settings(home=tmp_path / "home", project_dir=project, env=fleet_env), store)
        n = Counts(fleet, monkeypatch)
        async with anyio.create_task_group() as tg:
            bus = app.FleetBus()
            bus.subscribe(lambda event: None)  # a client listens
            tg.start_soon(app.publish_changes, fleet, bus)
            await _until(lambda: n.passes >= 20, "20 passes")
            assert n.rows_read == 1, "rows were read again although nothing changed"
            spec = AgentSpec(runner="command", command=("true",), template="t")
            await store.insert_agent(
                id=uuid.uuid4().hex, name="new", spec=spec, spec_hash="h", cwd=str(project), idempotency_key=None
            )
            await _until(lambda: n.rows_read >= 2, "the rows read after a change")
            # The stamp is read on the point reader while the insert's transaction may be half-way: its INSERT is
            # counted first (this connection's total_changes), its COMMIT then (the reader's data_version), so one
            # write may be read twice; never more, and then no more reads while nothing changes.
            seen = n.passes
            await _until(lambda: n.passes >= seen + 20, "20 more passes")
            settled = n.rows_read
            assert settled <= 3, f"{settled - 1} reads for one change"
            await _until(lambda: n.passes >= seen + 40, "20 more passes")
            assert n.rows_read == settled, "rows were read again although nothing changed"
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_no_rows_read_while_nobody_listens_then_changes_announced_once_someone_does(
    tmp_path: Path, project: Path, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "RESOURCE_NOTIFY_S", 0.001)
    async with SqliteStore(tmp_path / "home" / "fleet.db") as store:
        fleet = Fleet(Settings(home=tmp_path / "home", project_dir=project, env=fleet_env), store)
        n = Counts(fleet, monkeypatch)
        spec = AgentSpec(runner="command", command=("true",), template="t")
        bus = app.FleetBus()
        heard: list[ServerEvent] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(app.publish_changes, fleet, bus)
            for i in range(5):  # the store changes while nobody listens
                await store.insert_agent(
                    id=uuid.uuid4().hex, name=f"quiet{i}", spec=spec, spec_hash="h", cwd=str(project),
                    idempotency_key=None,
                )  # fmt: skip
                await _until(lambda seen=n.passes: n.passes >= seen + 3, "3 more passes")
            assert n.rows_read == 0
            unsubscribe = bus.subscribe(heard.append)
            assert bus.listeners == 1
            await store.insert_agent(
                id=uuid.uuid4().hex, name="loud", spec=spec, spec_hash="h", cwd=str(project), idempotency_key=None
            )
            await _until(lambda: ResourceUpdated(uri="fleet://agents/loud") in heard, "the new agent announced")
            assert n.rows_read >= 1
            unsubscribe()
            unsubscribe()  # idempotent, counted once
            assert bus.listeners == 0
            tg.cancel_scope.cancel()
