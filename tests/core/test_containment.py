"""Nothing a turn starts outlives it: background jobs, nohup, setsid and double-forked children of a command agent
are gone when the turn ends normally, times out, is replaced or deleted, and when its wrapper is SIGKILLed.
Counted with a /proc scan for a marker each test's processes carry (tests/core/proc_scan.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from .helpers import call, wait_all
from .proc_scan import carrying, wait_until_none

pytestmark = pytest.mark.anyio

ESCAPES = 4  # &, nohup, setsid, double fork (tests/scripts/breakout.py)


@pytest.fixture
def new_marker() -> Iterator[Callable[[], str]]:
    """Markers for this test's processes; whatever still carries one at the end is killed (a failed test must not
    leave sleepers behind)."""
    made: list[str] = []

    def make() -> str:
        made.append(f"brk-{uuid.uuid4().hex}")
        return made[-1]

    yield make
    for marker in made:
        for pid in carrying(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


async def wait_ready(client: Any, agent: str) -> None:
    """Until the breakout script printed "ready" (all its escapes run)."""
    with anyio.fail_after(20):
        while "ready" not in (await call(client, "get_agent_output", agent=agent, mode="tail"))["text"]:
            await anyio.sleep(0.05)


async def test_turn_that_ends_normally_leaves_nothing(client: Any, new_marker: Callable[[], str]) -> None:
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} exit")
    out = await wait_all(client, ["b"])
    assert out["agents"][0]["turn_status"] == "succeeded", out
    assert wait_until_none(marker) == []


async def test_timeout_leaves_nothing(client: Any, new_marker: Callable[[], str]) -> None:
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout-timeout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    assert len(carrying(marker)) >= ESCAPES  # the escapes really run
    out = await wait_all(client, ["b"])
    assert out["agents"][0]["turn_status"] == "failed", out
    assert wait_until_none(marker) == []


async def test_delete_leaves_nothing(client: Any, new_marker: Callable[[], str]) -> None:
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    assert len(carrying(marker)) >= ESCAPES
    await call(client, "delete_agent", agents="all")
    assert wait_until_none(marker) == []


async def test_replace_leaves_nothing_of_the_replaced_turn(client: Any, new_marker: Callable[[], str]) -> None:
    first, second = new_marker(), new_marker()
    await call(client, "create_agent", name="b", template="breakout-replace", prompt=f"{first} stay")
    await wait_ready(client, "b")
    await call(client, "command_agent", agent="b", prompt=f"{second} exit")
    await wait_all(client, ["b"])
    assert wait_until_none(first) == []
    assert wait_until_none(second) == []


async def test_killed_wrapper_takes_the_program_with_it(
    client: Any, settings: Any, new_marker: Callable[[], str]
) -> None:
    from agent_fleet_mcp.store.sqlite import SqliteStore

    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    async with SqliteStore(Path(settings.home) / "fleet.db") as store:
        (turn,) = await store.turns_with_status("running")
    assert turn.pid is not None
    os.kill(turn.pid, signal.SIGKILL)  # the outermost process of the turn: what the fleet tracks
    out = await wait_all(client, ["b"])
    assert out["agents"][0]["turn_status"] in ("failed", "lost"), out
    assert wait_until_none(marker) == []


async def test_pgroup_fallback_never_loses_a_turn(client: Any, settings: Any, new_marker: Callable[[], str]) -> None:
    """Where namespaces are unavailable (forced here) turns still run, bounded by their process group."""
    from agent_fleet_mcp.runners import containment

    settings.env[containment.MODE_ENV] = "pgroup"
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    await call(client, "delete_agent", agents="all")
    # the last resort reaches the group and the descendants that left it; only the reparented double fork escapes
    assert len(wait_until_none(marker, timeout_s=2)) <= 1
