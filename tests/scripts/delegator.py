"""Test agent that delegates like an orchestrating model would: it starts a nested agent-fleet-mcp over stdio with
the environment the fleet gave it (same fleet home, its depth and root), creates `fanout` children running this same
definition, and waits on them with wait_for_agents until they finish. Prompt: "fanout=N levels=L"."""

import os
import re
import sys

import anyio
from mcp import Client, StdioServerParameters


def number(key: str, text: str, default: int) -> int:
    m = re.search(rf"{key}=(\d+)", text)
    return int(m.group(1)) if m else default


async def delegate(fanout: int, levels: int) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent_fleet_mcp"], env=dict(os.environ), cwd=os.getcwd()
    )
    me = os.environ["AGENT_NAME"]
    async with Client(params, mode="legacy") as c:
        children: list[str] = []
        for i in range(fanout):
            name = f"{me}.{i}"
            res = await c.call_tool(
                "create_agent",
                {"name": name, "template": "delegator", "prompt": f"fanout={fanout} levels={levels - 1}"},
            )
            if res.is_error:
                print("refused:", " ".join(getattr(b, "text", "") for b in res.content), flush=True)
                continue
            children.append(name)
        while children:
            res = await c.call_tool("wait_for_agents", {"agents": children, "timeout_s": 20})
            if not res.is_error and res.structured_content and res.structured_content["done"]:
                break
        print(f"children done: {len(children)}", flush=True)


def main() -> None:
    prompt = os.environ.get("AGENT_PROMPT", "")
    print(f"depth {os.environ.get('AGENT_FLEET_DEPTH')} root {os.environ.get('AGENT_FLEET_ROOT')}", flush=True)
    levels = number("levels", prompt, 1)
    if levels > 0:
        anyio.run(delegate, number("fanout", prompt, 2), levels)


main()
