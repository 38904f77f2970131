"""The generic `command` runner: any program named by a catalog file.

The argv comes only from the definition on disk (never from tool arguments). The prompt reaches the program on
stdin and in the file ``$AGENT_PROMPT_FILE`` (always, any length), and in ``$AGENT_PROMPT`` only when it is at most
``ENV_PROMPT_MAX_BYTES`` (Linux refuses to start a program with an environment entry over 128 KiB: "Argument list
too long"). Each stdout line becomes a `text` event and the whole stdout (tail-capped) the turn's result. Exit code 0
is success.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from agent_fleet_mcp.errors import RunnerUnavailable
from agent_fleet_mcp.events import Event, make
from agent_fleet_mcp.runners.base import LaunchPlan, TurnRequest, result_from_exit, scrubbed_env
from agent_fleet_mcp.runners.process import TurnFiles
from agent_fleet_mcp.spec import AgentSpec

RESULT_KEEP_CHARS = 200_000
ENV_PROMPT_MAX_BYTES = 64 * 1024  # larger prompts: stdin and $AGENT_PROMPT_FILE only


class CommandParser:
    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._size = 0

    def feed(self, line: str) -> list[Event]:
        self._chunks.append(line)
        self._size += len(line) + 1
        while self._size > RESULT_KEEP_CHARS and len(self._chunks) > 1:
            self._size -= len(self._chunks.pop(0)) + 1
        return [make("text", text=line)] if line.strip() else []

    def finish(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return result_from_exit(exit_code, "\n".join(self._chunks).strip(), stderr_tail)


class CommandRunner:
    name = "command"

    def check_available(self, spec: AgentSpec, env: Mapping[str, str]) -> None:
        if not spec.command:
            raise RunnerUnavailable(
                "runner 'command' needs a `command:` argv list in the catalog definition; "
                "ad-hoc agents cannot name commands (use a template that defines one)"
            )
        exe = spec.command[0]
        if "/" not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            raise RunnerUnavailable(f"command {exe!r} of this definition is not on PATH; install it or fix `command:`")

    def build(self, req: TurnRequest) -> LaunchPlan:
        env = scrubbed_env(req.env, prefixes=("AGENT_FLEET_",))
        if len(req.prompt.encode("utf-8", errors="replace")) <= ENV_PROMPT_MAX_BYTES:
            env["AGENT_PROMPT"] = req.prompt
        env.update(
            AGENT_PROMPT_FILE=str(TurnFiles.for_turn(req.agent_dir / "turns", req.turn).prompt),  # written by spawn
            AGENT_NAME=req.agent_name,
            AGENT_TURN=str(req.turn),
            AGENT_DIR=str(req.agent_dir),
            AGENT_PERMISSION=req.spec.permission,
        )
        return LaunchPlan(argv=list(req.spec.command), env=env, cwd=req.cwd, stdin_text=req.prompt)

    def new_parser(self, req: TurnRequest) -> CommandParser:
        return CommandParser()
