"""Secrets stay with the process that needs them: with fake API keys in the real stdio server's environment, a
command agent and a worker's `bash` tool command hunt for them in every readable /proc/*/environ and cmdline and
in every file of the fleet home (tests/scripts/snoop.py). They find none."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall

from .helpers import call, wait_all
from .test_stdio_restart import stdio_client

pytestmark = pytest.mark.anyio

SNOOP = Path(__file__).resolve().parents[1] / "scripts" / "snoop.py"
NAMES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY")


def with_fake_keys(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The server's environment with a unique fake value per key (as snoop.py derives them), and the token."""
    token = uuid.uuid4().hex
    keys = {name: f"fake-{name}-{token[::-1]}" for name in NAMES}
    return {**env, **keys}, token


async def test_command_agent_finds_no_key(fleet_env: dict[str, str], project: Path) -> None:
    env, token = with_fake_keys(fleet_env)
    async with stdio_client(env, project) as c:
        await call(c, "create_agent", name="snoop", template="snoop", prompt=token)
        out = await wait_all(c, ["snoop"])
        assert out["finished"][0]["status"] == "succeeded", out
        text = (await call(c, "get_agent_output", agent="snoop"))["text"]
    assert text.splitlines()[-1] == "found 0", text


async def test_worker_bash_command_finds_no_key(fleet_env: dict[str, str], project: Path) -> None:
    env, token = with_fake_keys(fleet_env)
    home = Path(env["AGENT_FLEET_HOME"])
    command = f"{sys.executable} {SNOOP} {token} {home}"
    with ScriptedModelServer([ToolCall("bash", {"command": command}), "snooped"]) as srv:
        env["ANTHROPIC_BASE_URL"] = srv.base_url
        try:
            async with stdio_client(env, project) as c:
                await call(c, "create_agent", name="w", runner="anthropic", permission="readwrite", prompt="look")
                out = await wait_all(c, ["w"], timeout_s=40)
                assert out["finished"][0]["status"] == "succeeded", out
        finally:
            forkserver.stop(home)
        srv.assert_complete()
    found = (project / "snoop-found.txt").read_text()
    assert found.splitlines()[-1] == "found 0", found
