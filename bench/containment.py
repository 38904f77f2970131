"""Escapes that outlive their turn, and API keys an agent can read, per containment mode (docs/containment.md).

    uv run python bench/containment.py            # every mode this machine allows: pgroup (the last resort, the
                                                  # old behaviour), cgroup, pidns, and both (the default here)
    uv run python bench/containment.py pgroup cgroup   # only these

Runs real agents through the MCP tools (in-process server; this process is the server and holds four fake keys in
its real environment, re-executing itself to put them there). Escape cases: a command agent
(tests/scripts/breakout.py: `&`, nohup, setsid, double fork) whose turn ends normally, times out, is deleted, is
replaced, or whose outer process is SIGKILLed; and a worker `bash` tool command doing the same (scripted model),
counted when the turn is over. Survivors: live processes whose environ carries the case's marker, after up to 3 s.
Keys: what tests/scripts/snoop.py finds in /proc/*/environ, /proc/*/cmdline and the fleet home, run as a command
agent and as a worker `bash` command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import containment, forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.testing import ScriptedModelServer, ToolCall
from agent_fleet_mcp.trust import trust_files

REPO = Path(__file__).resolve().parent.parent
AGENTS = REPO / "tests" / "agents"
SNOOP = REPO / "tests" / "scripts" / "snoop.py"
CASES = ("amp", "nohup", "setsid", "doublefork")
KEY_NAMES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY")
TOKEN_ENV = "BENCH_SNOOP_TOKEN"


def carrying(needle: str) -> int:
    n = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle.encode() in (entry / "environ").read_bytes():
                    n += 1
            except OSError:
                pass
    return n


def survivors(marker: str) -> dict[str, int]:
    deadline = time.monotonic() + 3.0
    while carrying(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    per = {c: carrying(f"{marker}:{c}") for c in CASES}
    left = _pids(marker)
    for pid in left:  # clean up for the next case
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    per["program"] = max(0, len(left) - sum(per.values()))
    return per


def _pids(needle: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle.encode() in (entry / "environ").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


async def ok(c: Any, tool: str, **args: Any) -> dict[str, Any]:
    res = await c.call_tool(tool, args)
    assert not res.is_error, res.content
    return res.structured_content


async def ready(c: Any, agent: str) -> None:
    with anyio.fail_after(30):
        while "ready" not in (await ok(c, "get_agent_output", agent=agent, mode="tail"))["text"]:  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def command_cases(settings: Settings) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    async with Client(build_server(settings)) as c:
        for end in ("normal end", "timeout", "delete", "replace", "killed wrapper"):
            m = f"brk-{uuid.uuid4().hex}"
            name = f"b{len(out)}"
            template = {"timeout": "breakout-timeout", "replace": "breakout-replace"}.get(end, "breakout")
            await ok(
                c,
                "create_agent",
                name=name,
                template=template,
                prompt=f"{m} {'exit' if end == 'normal end' else 'stay'}",
            )
            if end != "normal end":
                await ready(c, name)
            if end == "delete":
                await ok(c, "delete_agent", agents=[name])
            elif end == "replace":
                await ok(c, "command_agent", agent=name, prompt=f"brk-{uuid.uuid4().hex} exit")
            elif end == "killed wrapper":
                async with SqliteStore(settings.home / "fleet.db") as store:
                    (turn,) = await store.turns_with_status("running")
                os.kill(turn.pid or 0, signal.SIGKILL)
            if end != "delete":
                await ok(c, "wait_for_agents", agents=[name], timeout_s=40)
            out[end] = survivors(m)
    return out


def bash_escapes(marker: str) -> str:
    return (
        f"export AGENT_PROMPT={marker}; "
        f"BREAKOUT_CASE={marker}:amp sleep 300 & "
        f"BREAKOUT_CASE={marker}:nohup nohup sleep 300 >/dev/null 2>&1 & "
        f"BREAKOUT_CASE={marker}:setsid setsid sleep 300 >/dev/null 2>&1 </dev/null & "
        f"(BREAKOUT_CASE={marker}:doublefork setsid sh -c 'sleep 300 & exit 0' >/dev/null 2>&1 </dev/null &); "
        "echo started"
    )


async def worker_case(settings: Settings, command: str) -> None:
    with ScriptedModelServer([ToolCall("bash", {"command": command}), "done"]) as srv:
        env = dict(settings.env, ANTHROPIC_BASE_URL=srv.base_url)
        s = Settings(home=settings.home, project_dir=settings.project_dir, env=env, poll_interval_s=0.05)
        async with Client(build_server(s)) as c:
            name = f"w{uuid.uuid4().hex[:6]}"
            await ok(c, "create_agent", name=name, runner="anthropic", permission="readwrite", prompt="go")
            await ok(c, "wait_for_agents", agents=[name], timeout_s=40)


def keys_found(project: Path) -> int:
    return int((project / "snoop-found.txt").read_text().splitlines()[-1].split()[-1])


async def run_mode(mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        home.mkdir()
        project.mkdir()
        trust_files(home, sorted(AGENTS.glob("*.md")))  # the test catalog, trusted as a person would
        env = dict(os.environ, AGENT_FLEET_AGENTS=str(AGENTS), AGENT_FLEET_HOME=str(home))
        env.pop(containment.MODE_ENV, None)
        if mode != containment.detect().label:
            env[containment.MODE_ENV] = mode
        settings = Settings(home=home, project_dir=project, env=env, poll_interval_s=0.05, kill_grace_s=1.0)
        try:
            result: dict[str, Any] = await command_cases(settings)
            m = f"brk-{uuid.uuid4().hex}"
            await worker_case(settings, bash_escapes(m))
            result["bash tool (call returned)"] = survivors(m)
            token = os.environ[TOKEN_ENV]
            async with Client(build_server(settings)) as c:
                await ok(c, "create_agent", name="snoop", template="snoop", prompt=token)
                await ok(c, "wait_for_agents", agents=["snoop"], timeout_s=40)
            result["keys: command agent"] = keys_found(project)
            await worker_case(settings, f"{sys.executable} {SNOOP} {token} {home}")
            result["keys: worker bash"] = keys_found(project)
        finally:
            forkserver.stop(home)
        return result


async def main() -> None:
    active = containment.detect()
    print(f"containment on this machine: {active.describe()} {list(active.why_not)}")
    available = ["pgroup"] + (["cgroup"] if active.cgroup_base else []) + (["pidns"] if active.mode == "pidns" else [])
    available += [active.label] if active.label not in available else []
    modes = sys.argv[1:] or available
    results = {mode: await run_mode(mode) for mode in modes}
    print(f"\n| case | {' | '.join(modes)} |\n|---|{'---|' * len(modes)}")
    for case in results[modes[0]]:
        cells = []
        for mode in modes:
            v = results[mode][case]
            cells.append(
                str(sum(v.values()))
                + (
                    f" ({', '.join(f'{k} {n}' for k, n in v.items() if n)})"
                    if isinstance(v, dict) and sum(v.values())
                    else ""
                )
                if isinstance(v, dict)
                else str(v)
            )
        print(f"| {case} | {' | '.join(cells)} |")


if __name__ == "__main__":
    if TOKEN_ENV not in os.environ:  # put the fake keys into this process's real environment (/proc/self/environ)
        token = uuid.uuid4().hex
        keys = {name: f"fake-{name}-{token[::-1]}" for name in KEY_NAMES}
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **keys, TOKEN_ENV: token})
    anyio.run(main)
