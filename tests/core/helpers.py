from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult


def ok(res: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful tool call (fails the test with the error text otherwise)."""
    assert not res.is_error, res.content
    assert res.structured_content is not None
    return res.structured_content


def err(res: CallToolResult) -> str:
    assert res.is_error, res.structured_content
    return " ".join(getattr(c, "text", "") for c in res.content)


async def call(client: Any, tool: str, **args: Any) -> dict[str, Any]:
    return ok(await client.call_tool(tool, args))


async def wait_all(client: Any, agents: list[str] | None = None, timeout_s: float = 20) -> dict[str, Any]:
    args: dict[str, Any] = {"timeout_s": timeout_s}
    if agents:
        args["agents"] = agents
    out = await call(client, "wait_for_agents", **args)
    assert out["done"], out
    return out
