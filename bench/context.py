"""What the orchestrator's context pays: the tool results of one delegation job and the tool schemas, over stdio.

    uv run python bench/context.py            # a table
    uv run python bench/context.py --json     # [{"figure", "value", "target", "ok"}, ...]

The job is the demo's (`agent-fleet demo`): on the offline scripted model, the real server over stdio, a real MCP
client plays the host: list_task_agents, one run_agents (3 scouts -> planner -> builder) and wait_for_agents on its
batch until it is done. A call costs bytes/4 tokens of whichever is larger: the JSON of its structuredContent (what
Claude Code and VS Code give the model: JSON.stringify, no spaces) or its text content (what Claude Desktop shows).
The tool schemas' model-facing part is each tool's name + description + inputSchema JSON (tools/list).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from agent_fleet_mcp.demo import RUNS, write_sample
from agent_fleet_mcp.testing import ScriptedModelServer

JOB_TOKENS = 1_500
SCHEMA_CHARS = 8_000  # all the tools, with every parameter described (issue 12)
EIGHT_TOOLS_CHARS = 6_900  # the eight tools of this branch (a ninth, merge_agent, must fit in SCHEMA_CHARS)

warnings.filterwarnings("ignore")


def tokens(res: CallToolResult) -> int:
    """bytes/4 of the larger of the structured JSON and the text content."""
    structured = json.dumps(res.structured_content, separators=(",", ":"), ensure_ascii=False)
    text = "".join(getattr(c, "text", "") for c in res.content)
    return max(len(structured.encode()), len(text.encode())) // 4


def schema_chars(tool: Any) -> int:
    return len(tool.name) + len(tool.description or "") + len(json.dumps(tool.input_schema, separators=(",", ":")))


async def measure() -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    calls: list[tuple[str, int]] = []
    extra: list[tuple[str, int]] = []  # not part of the job: what a later look costs
    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer() as srv:
        project, home = Path(tmp) / "inventory", Path(tmp) / "home"
        write_sample(project)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENT_FLEET_", "CLAUDECODE"))}
        env.update(AGENT_FLEET_HOME=str(home), AGENT_FLEET_MAX_CONCURRENT="4", ANTHROPIC_BASE_URL=srv.base_url,
                   ANTHROPIC_API_KEY="bench")  # fmt: skip
        server = [sys.executable, "-m", "agent_fleet_mcp"]
        params = StdioServerParameters(command=server[0], args=server[1:], env=env, cwd=str(project))
        try:
            async with Client(params, mode="legacy") as c:
                tools = (await c.list_tools()).tools
                sizes = [(t.name, schema_chars(t)) for t in tools]

                async def call(tool: str, **args: Any) -> dict[str, Any]:
                    res = await c.call_tool(tool, args)
                    assert not res.is_error, res.content
                    calls.append((tool, tokens(res)))
                    if os.environ.get("BENCH_SHOW"):
                        print(json.dumps(res.structured_content), "\n", res.content[0].text, file=sys.stderr)
                    return res.structured_content or {}

                await call("list_task_agents")
                out = await call("run_agents", runs=RUNS, wait_s=20)
                batch = out["batch"]["batch"]
                while not out.get("done"):
                    out = await call("wait_for_agents", batch=batch, timeout_s=30)
                names = [r["agent"] for r in out["batch"]["runs"] if r.get("agent")]
                for tool, args in (("wait_for_agents", {"agents": names, "timeout_s": 0}),
                                   ("get_agent_status", {})):  # fmt: skip
                    res = await c.call_tool(tool, args)
                    extra.append((f"{tool}({', '.join(args)}) after the job, {len(names)} agents", tokens(res)))
                    if os.environ.get("BENCH_SHOW"):
                        print(json.dumps(res.structured_content), "\n", res.content[0].text, file=sys.stderr)
                await c.call_tool("delete_agent", {"agents": "all"})
        finally:
            from agent_fleet_mcp.runners import forkserver

            forkserver.stop(home)
    return calls, extra, sizes


def rows(
    calls: list[tuple[str, int]], extra: list[tuple[str, int]], sizes: list[tuple[str, int]]
) -> list[dict[str, Any]]:
    job = sum(n for _, n in calls)
    eight = sum(n for name, n in sizes if name != "merge_agent")
    out: list[dict[str, Any]] = [
        {"figure": f"job tokens: {name}", "value": n, "target": None, "ok": True} for name, n in calls
    ]
    out += [
        {"figure": "job tokens: total (scout x3 -> plan -> build)", "value": job, "target": JOB_TOKENS,
         "ok": job <= JOB_TOKENS},
        *({"figure": f"tokens: {name}", "value": n, "target": None, "ok": True} for name, n in extra),
        {"figure": f"tools/list model-facing chars ({len(sizes)} tools)", "value": sum(n for _, n in sizes),
         "target": SCHEMA_CHARS, "ok": sum(n for _, n in sizes) < SCHEMA_CHARS},
        {"figure": "tools/list model-facing chars (the eight tools)", "value": eight, "target": EIGHT_TOOLS_CHARS,
         "ok": eight <= EIGHT_TOOLS_CHARS},
    ]  # fmt: skip
    return out


def main() -> None:
    calls, extra, sizes = anyio.run(measure)
    table = rows(calls, extra, sizes)
    if "--json" in sys.argv[1:]:
        print(json.dumps(table))
        return
    print(f"{'figure':<64} {'value':>7} {'target':>7}  ok")
    for r in table:
        target = "" if r["target"] is None else f"{r['target']:,}"
        print(f"{r['figure']:<64} {r['value']:>7,} {target:>7}  {'' if r['target'] is None else r['ok']}")
    for name, n in sizes:
        print(f"  schema {name:<24} {n:>6,} chars")


if __name__ == "__main__":
    main()
