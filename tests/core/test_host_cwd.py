"""The README's run-from-a-clone line keeps the host's folder: started from the host's project, the server gives
agents that folder as their default cwd and reads its ./agents catalog (not the clone's)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from agent_fleet_mcp.trust import trust_files

from .helpers import call, wait_all

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
PWD_AGENT = """---
name: pwd
description: prints its working directory
runner: command
command: ["{python}", "-c", "import os; print('cwd=' + os.getcwd())"]
---
body
"""


def readme_clone_line() -> list[str]:
    """The README's `uv run ... agent-fleet-mcp` line for running from a clone, as argv for this checkout."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"`(uv run [^`]*/abs/path/to/agent-fleet-mcp agent-fleet-mcp)`", text)
    assert found, "README lost its run-from-a-clone line"
    return found[1].replace("/abs/path/to/agent-fleet-mcp", str(REPO)).split()


async def test_readme_clone_line_keeps_the_hosts_folder(tmp_path: Path, fleet_env: dict[str, str]) -> None:
    host = tmp_path / "host-project"
    (host / "agents").mkdir(parents=True)
    (host / "agents" / "host-only.md").write_text(PWD_AGENT.replace("name: pwd", "name: host-only"))
    elsewhere = tmp_path / "catalog"
    elsewhere.mkdir()
    (elsewhere / "pwd.md").write_text(PWD_AGENT)
    trust_files(Path(fleet_env["AGENT_FLEET_HOME"]), [elsewhere / "pwd.md", host / "agents" / "host-only.md"])
    uv = shutil.which("uv") or shutil.which("uv", path=os.defpath)
    assert uv, "uv is needed to run the README's line"
    argv = readme_clone_line()
    env = dict(fleet_env, UV_OFFLINE="1", UV_FROZEN="1", AGENT_FLEET_AGENTS=str(elsewhere))
    env.pop("VIRTUAL_ENV", None)
    params = StdioServerParameters(command=uv, args=argv[1:], env=env, cwd=str(host))
    async with Client(params, mode="legacy") as c:
        listed = await call(c, "list_task_agents", query="host-only")
        await call(c, "create_agent", name="where", template="pwd", prompt="where am I?")
        await wait_all(c, ["where"], timeout_s=45)
        out = await call(c, "get_agent_output", agent="where")
    assert out["turn_status"] == "succeeded", out
    assert f"cwd={host.resolve()}" in out["text"], out["text"]  # the default cwd is the host's folder
    assert [a["name"] for a in listed["agents"]] == ["host-only"]  # and ./agents is the host's


@pytest.mark.anyio
async def test_default_cwd_is_the_server_process_cwd(
    tmp_path: Path, fleet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_fleet_mcp.config import Settings
    from agent_fleet_mcp.fleet import Fleet
    from agent_fleet_mcp.store.sqlite import SqliteStore

    host = tmp_path / "host"
    host.mkdir()
    monkeypatch.chdir(host)
    settings = Settings.from_env(fleet_env)
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        assert fleet.validate_cwd(None) == str(host.resolve())
        res = await fleet.create_agent(name="here", template="echo")
        assert res.agent.cwd == str(host.resolve()) != str(REPO)
