"""Running the worker as a real subprocess against the scripted Messages API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = [sys.executable, "-m", "agent_fleet_mcp.worker"]


@dataclass
class WorkerRun:
    code: int
    events: list[dict[str, Any]]
    stderr: str

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of("result")
        assert len(results) == 1, (self.events, self.stderr)
        return results[0]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def worker_env(base_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDE"))}
    if base_url is not None:
        env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test")
    env.update(extra)
    return env


def start_worker(
    base_url: str | None,
    agent_dir: Path,
    cwd: Path,
    prompt: str,
    *,
    permission: str = "readonly",
    model: str = "claude-sonnet-4-5",
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    argv = [*WORKER, "--agent-dir", str(agent_dir), "--cwd", str(cwd), "--model", model, "--permission", permission]
    proc = subprocess.Popen(
        [*argv, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else worker_env(base_url),
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(prompt)
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> WorkerRun:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    code = proc.wait(timeout=timeout)
    proc.stdout.close()
    proc.stderr.close()
    events = [json.loads(line) for line in out.splitlines()]  # every stdout line must be an event
    return WorkerRun(code, events, err)


def run_worker(base_url: str | None, agent_dir: Path, cwd: Path, prompt: str, **kw: Any) -> WorkerRun:
    return finish(start_worker(base_url, agent_dir, cwd, prompt, **kw))


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["name"] for t in body.get("tools", [])]


def strip_cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Request messages without the per-request cache_control markers."""
    return [
        {**m, "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]} for m in messages
    ]
