"""Shared fixtures: an isolated fleet home, a project folder, and the test catalog (command-runner agents)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import cgroups
from agent_fleet_mcp.trust import trust_files

TESTS = Path(__file__).parent
TEST_AGENTS = TESTS / "agents"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C tests send SIGINT to children; a suite started in the background by a shell without job control
    (``cmd &`` in a script) has SIGINT ignored, and every child would inherit that and never end. A handled signal
    is reset to its default in an exec'd child: handle it here (as an interactive run does) so they see a terminal's."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_turn_cgroups_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remove the empty turn cgroups of the test's fleet homes when it ends. A server releases a turn's cgroup when
    the turn ends, and a new server removes its home's leftovers; a test that spawns turns by hand, or kills its
    server, then deletes the home, and its cgroups stayed: a thousand per run of the suite. The homes looked at are
    those tests use (``tmp_path``, ``tmp_path/home``, and the worker's base temp folder, which is the home of turn
    files made at ``tmp_path/<name>/turns``). Tests of one worker run one at a time, and other workers' homes are
    elsewhere, so no turn about to join its new cgroup loses it; a populated cgroup is never removed."""
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if not isinstance(tmp, Path) or (base := cgroups.base()[0]) is None:
        return
    for home in (tmp, tmp / "home", tmp.parent):
        for cg in cgroups.leftovers(base, home):
            cgroups.remove(cg, timeout_s=0)
        with contextlib.suppress(OSError):
            cgroups.home_dir(base, home).rmdir()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    (p / "README.md").write_text("# sample\n")
    return p


def trust_test_agents(home: Path, folder: Path = TEST_AGENTS) -> None:
    """Trust the test catalog in ``home`` the way a person does (`agent-fleet trust`): catalog files outside the
    built-ins are used only once trusted."""
    trust_files(home, sorted(folder.glob("*.md")))


@pytest.fixture
def fleet_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CLAUDECODE", None)
    env["AGENT_FLEET_HOME"] = str(tmp_path / "home")
    env["AGENT_FLEET_AGENTS"] = str(TEST_AGENTS)
    env["AGENT_FLEET_FORKSERVER_WARM"] = "0"  # no zygote per test home at server start (tests start theirs)
    trust_test_agents(tmp_path / "home")
    return env


@pytest.fixture
def settings(tmp_path: Path, project: Path, fleet_env: dict[str, str]) -> Settings:
    return Settings(
        home=tmp_path / "home", max_concurrent=4, project_dir=project, env=fleet_env, kill_grace_s=1.0,
        poll_interval_s=0.05,
    )  # fmt: skip


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    from mcp import Client

    from agent_fleet_mcp.server import build_server

    async with Client(build_server(settings)) as c:
        yield c


@pytest.fixture
def no_leftover_groups() -> Iterator[set[int]]:
    """Collects process-group ids the test started; fails the test if any process of them is still alive."""
    groups: set[int] = set()
    yield groups
    alive = {pg: pids for pg in groups if (pids := pids_in_group(pg))}
    assert not alive, f"orphan processes left behind: {alive}"


def pids_in_group(pgid: int) -> list[int]:
    """Scan /proc for live (non-zombie) processes whose process group is pgid."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            out.append(int(entry.name))
    return out
