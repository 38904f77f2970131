"""The containment modes one by one: the pgroup last resort never loses a turn; a cgroup-mode turn is found again
by a restarted server (its cgroup is named from the turn, nothing is kept in memory) and delete ends its escaped
descendants; a server start removes the home's empty turn cgroups, never a populated one."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import cgroups, containment
from agent_fleet_mcp.server import build_server

from .helpers import call
from .proc_scan import carrying, wait_until_none
from .test_containment import ESCAPES, wait_ready

pytestmark = pytest.mark.anyio


def cgroup_base() -> Path:
    base = containment.detect().cgroup_base
    if base is None:
        pytest.skip(f"no usable cgroup v2 here: {cgroups.probe()[1]}")
    return base


async def test_pgroup_fallback_never_loses_a_turn(client: Any, settings: Any, new_marker: Callable[[], str]) -> None:
    """Where namespaces are unavailable (forced here) turns still run, bounded by their process group."""
    settings.env[containment.MODE_ENV] = "pgroup"
    marker = new_marker()
    await call(client, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
    await wait_ready(client, "b")
    await call(client, "delete_agent", agents="all")
    # the last resort reaches the group and the descendants that left it; only the reparented double fork escapes
    assert len(wait_until_none(marker, timeout_s=2)) <= 1


async def test_restarted_server_kills_an_escaped_descendant_through_the_cgroup(
    settings: Settings, new_marker: Callable[[], str]
) -> None:
    base = cgroup_base()
    settings = dataclasses.replace(settings, env={**settings.env, containment.MODE_ENV: "cgroup"})
    marker = new_marker()
    async with Client(build_server(settings)) as c:
        await call(c, "create_agent", name="b", template="breakout", prompt=f"{marker} stay")
        await wait_ready(c, "b")
    # the first server is gone; the turn and its escapes live on in the turn's cgroup
    assert len(carrying(marker)) >= ESCAPES
    (turn_cg,) = [p for p in cgroups.home_dir(base, settings.home).iterdir() if p.is_dir()]
    assert set(carrying(marker)) <= set(cgroups.pids(turn_cg)), "every escape is inside the turn's cgroup"
    async with Client(build_server(settings)) as c:  # a new server, nothing in memory: it finds the cgroup by name
        await call(c, "delete_agent", agents="all")
    assert wait_until_none(marker) == []
    assert not turn_cg.exists() and not turn_cg.parent.exists()  # the home's parent cgroup goes with its last turn


async def test_server_start_removes_empty_turn_cgroups_never_a_live_one(settings: Settings) -> None:
    base = cgroup_base()
    parent = cgroups.home_dir(base, settings.home)
    empty, live = parent / "ag_gone0000-0001", parent / "ag_live0000-0002"
    assert cgroups.create(empty) and cgroups.create(live)
    sleeper = subprocess.Popen(["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec sleep 300', str(live)])
    try:
        with anyio.fail_after(10):
            while not cgroups.populated(live):
                await anyio.sleep(0.02)
        async with Client(build_server(settings)) as c:
            await call(c, "get_agent_status")
        assert not empty.exists()
        assert live.exists() and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        cgroups.remove(live)
        cgroups.remove(parent)


def test_a_probe_removes_a_probe_cgroup_left_by_a_process_that_died_never_a_recent_one() -> None:
    """A server killed during its cgroup probe left ``agent-fleet-probe-<pid>`` behind; the next probe removes it
    once it is older than any probe lasts. A recent one (a probe going on now: its cgroup is empty until its shell
    joins) is left alone."""
    base = cgroup_base()
    stale, current = base / f"{cgroups.PREFIX}probe-stale-test", base / f"{cgroups.PREFIX}probe-current-test"
    try:
        stale.mkdir()
        current.mkdir()
        old = time.time() - 2 * 3600  # left two hours ago: older than any probe lasts
        os.utime(stale, (old, old))
        assert cgroups.probe()[0] == base
        assert not stale.exists()
        assert current.exists()
    finally:
        for d in (stale, current):
            cgroups.remove(d, timeout_s=0)
