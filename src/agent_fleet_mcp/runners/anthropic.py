"""The `anthropic` runner: our own worker process (agent_fleet_mcp.worker) calling the Messages API.

The worker writes normalized events itself, so parsing is just ``events.loads``. Its conversation lives in
``<agent_dir>/history.json`` (no backend session id). The system prompt is handed over in a file in the agent's
folder to keep argv small; the prompt arrives on stdin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from agent_fleet_mcp.errors import RunnerUnavailable
from agent_fleet_mcp.events import Event, loads
from agent_fleet_mcp.permissions import check_readonly
from agent_fleet_mcp.private import write_private
from agent_fleet_mcp.runners.base import LaunchPlan, TurnRequest, result_from_exit, scrubbed_env
from agent_fleet_mcp.spec import AgentSpec
from agent_fleet_mcp.worker.tools import ALL_TOOLS

DEFAULT_MODEL = "claude-sonnet-4-5"
SYSTEM_FILE = "system_prompt.md"
ENV_PREFIXES: tuple[str, ...] = ("ANTHROPIC_", "AGENT_FLEET_")
WORKER_ENTRY = "agent_fleet_mcp.worker.__main__:main"  # what argv runs; forked preloaded when possible


class AnthropicParser:
    """The worker's stdout is already normalized: keep events, remember whether a `result` came."""

    def __init__(self) -> None:
        self.saw_result = False
        self._last_text = ""

    def feed(self, line: str) -> list[Event]:
        event = loads(line)
        if event is None:
            return []
        if event["type"] == "result":
            self.saw_result = True
        elif event["type"] == "text":
            self._last_text = str(event.get("text", ""))
        return [event]

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        if self.saw_result:
            return []
        return result_from_exit(exit_code, self._last_text, stderr_tail)


class AnthropicRunner:
    name = "anthropic"

    def check_available(self, spec: AgentSpec, env: Mapping[str, str]) -> None:
        if not (env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN")):
            raise RunnerUnavailable(
                "ANTHROPIC_API_KEY is not set: export it (or ANTHROPIC_AUTH_TOKEN), "
                "or point ANTHROPIC_BASE_URL at a compatible endpoint"
            )
        unknown = [t for t in spec.tools if t not in ALL_TOOLS]
        if unknown:
            raise RunnerUnavailable(
                f"runner 'anthropic' has no tool(s) {', '.join(unknown)}; its built-in tools are "
                f"{', '.join(ALL_TOOLS)} (write_file, edit_file and bash need permission readwrite)"
            )

    def build(self, req: TurnRequest) -> LaunchPlan:
        spec = req.spec
        check_readonly(spec)  # a readonly agent never asks for write_file/edit_file/bash
        argv = [
            sys.executable, "-m", "agent_fleet_mcp.worker",
            "--agent-dir", str(req.agent_dir),
            "--cwd", str(req.cwd),
            "--model", spec.model or DEFAULT_MODEL,
            "--permission", spec.permission,
        ]  # fmt: skip
        if spec.max_turns is not None:
            argv += ["--max-turns", str(spec.max_turns)]
        if spec.max_cost_usd is not None:
            argv += ["--max-cost-usd", repr(float(spec.max_cost_usd))]
        if spec.system_prompt.strip():
            argv += ["--system-file", str(write_system_file(req.agent_dir, spec.system_prompt))]
        if spec.tools:
            argv += ["--tools", ",".join(spec.tools)]
        env = scrubbed_env(req.env, prefixes=ENV_PREFIXES)
        return LaunchPlan(argv=argv, env=env, cwd=req.cwd, stdin_text=req.prompt, preload=WORKER_ENTRY)

    def new_parser(self, req: TurnRequest) -> AnthropicParser:
        return AnthropicParser()


def write_system_file(agent_dir: Path, text: str) -> Path:
    """The agent's system prompt as a file for the worker (atomic; unchanged content is not rewritten)."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    path = agent_dir / SYSTEM_FILE
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except OSError:
        pass
    tmp = path.with_name(f".{SYSTEM_FILE}.{os.getpid()}.tmp")
    write_private(tmp, text)
    os.replace(tmp, path)
    return path
