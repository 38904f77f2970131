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

DEFAULT_MODEL = "claude-sonnet-5-5"
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
            raise RunnerUnavailable(no_key_message(env))
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
        lim = req.limits
        max_turns = lim.max_turns or spec.max_turns
        if max_turns is not None:
            argv += ["--max-turns", str(max_turns)]
        # what is left of each budget when the turn starts: the worker stops before its next model request once
        # this turn's own usage reaches one of them
        cost = lim.cost_usd if lim.cost_usd is not None else spec.max_cost_usd
        for flag, value in (("--max-cost-usd", cost), ("--fleet-budget-usd", lim.fleet_usd),
                            ("--batch-budget-usd", lim.batch_usd)):  # fmt: skip
            if value is not None:
                argv += [flag, repr(round(float(value), 6))]
        tokens = lim.tokens if lim.tokens is not None else spec.max_tokens
        if tokens is not None:
            argv += ["--max-total-tokens", str(tokens)]
        if spec.system_prompt.strip():
            argv += ["--system-file", str(write_system_file(req.agent_dir, spec.system_prompt))]
        if spec.tools:
            argv += ["--tools", ",".join(spec.tools)]
        env = scrubbed_env(req.env, prefixes=ENV_PREFIXES)
        return LaunchPlan(argv=argv, env=env, cwd=req.cwd, stdin_text=req.prompt, preload=WORKER_ENTRY)

    def new_parser(self, req: TurnRequest) -> AnthropicParser:
        return AnthropicParser()


def no_key_message(env: Mapping[str, str]) -> str:
    """Why the anthropic runner cannot start without a key, and what to set. The SDK refuses every request without
    an api key or auth token, whatever ANTHROPIC_BASE_URL points at."""
    base = env.get("ANTHROPIC_BASE_URL", "").strip()
    if base:
        return (
            f"ANTHROPIC_API_KEY is not set: ANTHROPIC_BASE_URL ({base[:100]}) still needs a key. Set "
            "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the server's environment to that endpoint's key, or to "
            "any placeholder such as ANTHROPIC_API_KEY=dummy if it checks none (agent-fleet scripted-model checks none)"
        )
    return (
        "ANTHROPIC_API_KEY is not set: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the server's environment "
        "(for Claude Code: claude mcp add fleet -e ANTHROPIC_API_KEY=... -- agent-fleet-mcp). For an offline try, run "
        "agent-fleet scripted-model and set ANTHROPIC_BASE_URL to its URL and ANTHROPIC_API_KEY=dummy (any value)"
    )


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
