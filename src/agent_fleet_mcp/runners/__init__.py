"""Runner registry: name -> Runner. Backends are imported lazily (the server starts fast)."""

from __future__ import annotations

import importlib

from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.inputs import quote
from agent_fleet_mcp.runners.base import Runner
from agent_fleet_mcp.spec import RUNNER_NAMES

_MODULES = {
    "command": ("agent_fleet_mcp.runners.command", "CommandRunner"),
    "anthropic": ("agent_fleet_mcp.runners.anthropic", "AnthropicRunner"),
    "claude-code": ("agent_fleet_mcp.runners.claude_code", "ClaudeCodeRunner"),
    "codex": ("agent_fleet_mcp.runners.codex", "CodexRunner"),
    "gemini": ("agent_fleet_mcp.runners.gemini", "GeminiRunner"),
}


def get_runner(name: str) -> Runner:
    if name not in _MODULES:
        raise InvalidRequest(f"unknown runner {quote(name)}; use one of: {', '.join(RUNNER_NAMES)}")
    module, cls = _MODULES[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # a backend not built into this install
        raise InvalidRequest(f"runner {name!r} is not available in this build ({exc})") from exc
    runner: Runner = getattr(mod, cls)()
    return runner


def preload_all() -> None:
    """Import every backend now (the server does it in the background at start): the first ``create_agent`` or
    ``run_agents`` then does not pay the imports. A backend missing from this build is skipped, as it is lazily."""
    for module, _cls in _MODULES.values():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue
