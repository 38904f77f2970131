"""Nothing a turn starts outlives it: background jobs, nohup, setsid and double-forked children of a command agent
are gone when the turn ends normally, times out, is replaced or deleted, and when its wrapper is SIGKILLed.
Counted with a /proc scan for a marker each test's processes carry (tests/core/proc_scan.py).

Every case runs in each containment mode (``containment_mode``): the strongest of the machine (pidns + cgroup here),
namespaces only, and a cgroup only. ``AGENT_FLEET_TEST_CONTAINMENT=pgroup`` runs them in the last resort instead,
where the escape cases fail (docs/containment.md)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from .helpers import call, wait_all
from .proc_scan import carrying, wait_until_none

pytestmark = pytest.mark.anyio
MODES = os.environ.get("AGENT_FLEET_TEST_CONTAINMENT", "strongest,pidns,cgroup").split(",")


def skip_unless_available(mode: str) -> None:
    """Skip a mode this machine cannot give, saying why (CI and the dev machine have all of them)."""
    from agent_fleet_mcp.runners import cgroups, containment

    best = containment.detect()
    if mode == "cgroup" and best.cgroup_base is None:
        pytest.skip(f"no usable cgroup v2 here: {cgroups.probe()[1]}")
    if mode == "pidns" and best.mode != "pidns":
        pytest.skip(f"no user + PID namespaces here: {'; '.join(best.why_not)}")


@pytest.fixture(params=MODES, autouse=True)
def containment_mode(request: Any, settings: Any) -> str:
    """The mode every turn of the test runs in (AGENT_FLEET_CONTAINMENT in the fleet's environment)."""
    from agent_fleet_mcp.runners import containment

    mode = str(request.param)
    skip_unless_available(mode)
    if mode != "strongest":
        settings.env[containment.MODE_ENV] = mode
    return mode


def turn_cgroup_of(pid: int) -> str:
    """The cgroup v2 path of a process ("" when gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    return ""

ESCAPES = 4  # &, nohup, setsid, double fork (tests/scripts/breakout.py)


async def wait_ready(client: Any, agent: str) -> None:
    """Until the breakout script printed "ready" (all its escapes run)."""
    with anyio.fail_after(20):
        while "ready" not in (await call(client, "get_agent_output", agent=agent, mode="tail"))["text"]:
            await anyio.sleep(0.05)


async def test_turn_that_ends_normally_leaves_nothing(client: Any, new_marker: Callable[[], str]) -> None:
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} exit")
    out = await wait_all(client, ["b"])
    assert out["finished"][0]["status"] == "succeeded", out
    assert wait_until_none(marker) == []


async def test_timeout_leaves_nothing(client: Any, new_marker: Callable[[], str]) -> None:
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout-timeout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    assert len(carrying(marker)) >= ESCAPES  # the escapes really run
    out = await wait_all(client, ["b"])
    assert out["finished"][0]["status"] == "failed", out
    assert wait_until_none(marker) == []


async def test_delete_leaves_nothing(
    client: Any, settings: Any, new_marker: Callable[[], str], containment_mode: str
) -> None:
    from agent_fleet_mcp.store.sqlite import SqliteStore

    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    assert len(carrying(marker)) >= ESCAPES
    async with SqliteStore(Path(settings.home) / "fleet.db") as store:
        (turn,) = await store.turns_with_status("running")
    in_cgroup = "/agent-fleet-" in turn_cgroup_of(turn.pid or 0)
    assert in_cgroup == (containment_mode in ("cgroup", "strongest")), turn_cgroup_of(turn.pid or 0)
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
    assert out["finished"][0]["status"] in ("failed", "lost"), out
    assert wait_until_none(marker) == []
