"""Our MCP prompts typed as slash commands into the real `claude` CLI (`-p`), against the scripted Messages API.

The CLI is the host here: it starts our server from an --mcp-config, expands `/mcp__fleet__<prompt> words...` into
the prompt's text, and sends it to the model. What the model received is read from the scripted server's recorded
request. Needs the pinned CLI (``bash scripts/install-tools.sh claude``); skipped loudly without it, FAILS in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.server import prompts
from agent_fleet_mcp.testing import Reply, ScriptedModelServer

from .helpers import real_claude

pytestmark = pytest.mark.claude_cli

CLI_TIMEOUT_S = 100.0  # under pytest-timeout's 120 s, so a hang reports the CLI's output


@pytest.fixture(scope="module")
def claude_exe() -> str:
    return real_claude("the slash-command tests")


def type_into_claude(exe: str, tmp_path: Path, typed: str) -> list[str]:
    """Run `claude -p TYPED` with our server configured as `fleet`; the text blocks of the user message the model
    received."""
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    config = tmp_path / "mcp.json"
    server: dict[str, Any] = {"command": sys.executable, "args": ["-m", "agent_fleet_mcp"]}
    server["env"] = {"AGENT_FLEET_HOME": str(tmp_path / "fleet-home")}
    config.write_text(json.dumps({"mcpServers": {"fleet": server}}))
    try:
        return _typed_into(exe, typed, config, home, project)
    finally:  # the server warmed a fork server for its fleet home: stop it (it would idle for 10 minutes)
        forkserver.stop(tmp_path / "fleet-home")


def _typed_into(exe: str, typed: str, config: Path, home: Path, project: Path) -> list[str]:
    with ScriptedModelServer([Reply("ok")], default_policy=False) as srv:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": srv.base_url,
            "ANTHROPIC_API_KEY": "test",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        argv = [exe, "-p", "--output-format", "json", "--mcp-config", str(config), "--strict-mcp-config", typed]
        done = subprocess.run(
            argv, env=env, cwd=project, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=CLI_TIMEOUT_S,
        )  # fmt: skip
        assert done.returncode == 0, f"claude exited {done.returncode}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
        assert json.loads(done.stdout)["result"] == "ok"
        (request,) = srv.message_requests
    first_user = next(m for m in request.body["messages"] if m["role"] == "user")
    content: list[dict[str, Any]] = first_user["content"]
    return [block["text"] for block in content if block.get("type") == "text"]


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("orchestrate", "make the retry count configurable"),
        ("review", "src/auth/ token expiry handling"),
        ("fleet", "which agents cost the most"),
    ],
)
def test_the_whole_typed_text_reaches_the_model_and_no_word_fills_another_argument(
    claude_exe: str, tmp_path: Path, prompt: str, words: str
) -> None:
    texts = type_into_claude(claude_exe, tmp_path, f"/mcp__fleet__{prompt} {words}")
    # The CLI expanded the slash command: the model sees the whole typed text in <command-args>...
    assert any(f"<command-args>{words}</command-args>" in t for t in texts), texts
    # ...and our prompt rendered from the first word alone: the CLI split the text on whitespace, and with one
    # argument no further word became a cwd, a focus or anything else.
    first_word_only = getattr(prompts, prompt)(words.split()[0])
    rendered = [t for t in texts if t.strip() == first_word_only.strip()]
    assert rendered, f"the prompt text the model got is not {prompt}({words.split()[0]!r}) alone: {texts}"
    # The text sends the model to <command-args> for the task.
    assert "<command-args>" in rendered[0] and "WHOLE text" in rendered[0]
