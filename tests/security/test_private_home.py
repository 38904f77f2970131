"""Attack: another local user reads the fleet home (prompts, transcripts, histories, logs, fleet.db). A fresh home
after real turns has nothing group/others can read, whatever the umask; an old open home is tightened at start;
`agent-fleet doctor` warns about a home others can read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_fleet_mcp import logs
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.testing import ScriptedModelServer
from agent_fleet_mcp.trust import trust_files

TEST_AGENTS = Path(__file__).parents[1] / "agents"

pytestmark = pytest.mark.anyio


def readable_by_others(home: Path) -> list[str]:
    """Every file or folder under home (home included) with a group/other permission bit, as `mode path`."""
    out: list[str] = []
    for root, dirs, files in os.walk(home):
        for p in [Path(root)] + [Path(root) / n for n in dirs + files]:
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                out.append(f"{stat.filemode(st.st_mode)} {p.relative_to(home.parent)}")
    return sorted(set(out))


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def call(client: Any, tool: str, **args: Any) -> dict[str, Any]:
    res = await client.call_tool(tool, args)
    assert not res.is_error, res.content
    return res.structured_content


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["umask022", "umask000"])
async def test_fresh_home_after_real_turns_is_private(
    umask: int, tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    home = tmp_path / "fresh-home"
    trust_files(home, [TEST_AGENTS / "echo.md"])  # creates the home, like `agent-fleet trust` would
    with ScriptedModelServer() as srv:
        env = dict(fleet_env, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="test", AGENT_FLEET_HOME=str(home))
        settings = Settings(home=home, project_dir=project, env=env, poll_interval_s=0.05)
        logs.configure(settings.logs_dir, stderr_level="CRITICAL")
        try:
            async with Client(build_server(settings)) as c:
                await call(c, "create_agent", name="w", runner="anthropic", permission="readwrite",
                           system_prompt="Be brief.", prompt="list the files, then write notes.md")  # fmt: skip
                await call(c, "create_agent", name="cmd", template="echo", prompt="hello")  # sh wrapper + exit file
                done = await call(c, "wait_for_agents", timeout_s=45)
                assert done["done"], done
                await call(c, "command_agent", agent="w", prompt="and again")
                assert (await call(c, "wait_for_agents", timeout_s=45))["done"]
        finally:
            forkserver.stop(home)
            logs.configure(None)
    assert (home / "fleet.db").exists() and list((home / "agents").glob("*/turns/0001.out.jsonl"))
    assert (home / "logs" / "fleet.log").exists()
    assert readable_by_others(home) == []


async def test_open_home_is_tightened_at_start(tmp_path: Path, project: Path, fleet_env: dict[str, str]) -> None:
    home = Path(fleet_env["AGENT_FLEET_HOME"])
    (home / "agents" / "ag_old" / "turns").mkdir(parents=True)
    (home / "agents" / "ag_old" / "turns" / "0001.prompt.txt").write_text("secret plan")
    for p in (home, home / "agents", home / "agents" / "ag_old", home / "agents" / "ag_old" / "turns"):
        p.chmod(0o755)
    (home / "agents" / "ag_old" / "turns" / "0001.prompt.txt").chmod(0o644)
    settings = Settings(home=home, project_dir=project, env=fleet_env, poll_interval_s=0.05)
    async with Client(build_server(settings)) as c:
        await call(c, "get_agent_status")
    assert readable_by_others(home) == []


def test_doctor_warns_about_an_open_home(tmp_path: Path, fleet_env: dict[str, str]) -> None:
    from agent_fleet_mcp.doctor import run_checks

    home = tmp_path / "doctor-home"
    (home / "agents").mkdir(parents=True)
    home.chmod(0o700)
    (home / "agents").chmod(0o700)
    settings = Settings(home=home, env=fleet_env)
    ok = [c for c in run_checks(settings) if c.name == "home permissions"]
    assert [c.level for c in ok] == ["ok"]
    home.chmod(0o755)
    (home / "fleet.db").write_text("")
    (home / "fleet.db").chmod(0o644)
    warn = [c for c in run_checks(settings) if c.name == "home permissions"]
    assert [c.level for c in warn] == ["warn"]
    assert "2 entries" in warn[0].detail and "fleet.db" in warn[0].detail
    assert warn[0].fix == f"chmod -R go= {home}"
