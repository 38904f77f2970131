"""The tools' contract as a model reads it: small schemas with every parameter described, compact results (no
nulls, zeros, empty lists or defaults; the text a terse rendering, not the JSON again), and bounded answers that
count and page whatever they leave out."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from .helpers import call, err, ok, wait_all

pytestmark = pytest.mark.anyio

EIGHT_TOOLS_CHARS = 6_900  # bench/context.py measures the same figure
ALL_TOOLS_CHARS = 8_000  # with merge_agent (issue 11), the nine tools


def model_facing_chars(tool: Any) -> int:
    return len(tool.name) + len(tool.description or "") + len(json.dumps(tool.input_schema, separators=(",", ":")))


def undescribed(schema: dict[str, Any], where: str) -> list[str]:
    """Input properties (nested run objects included) without a description."""
    out: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            out.append(f"{where}.{name}")
    for name, sub in schema.get("$defs", {}).items():
        out += undescribed(sub, f"{where}.$defs.{name}")
    return out


def empties(value: Any, path: str = "") -> list[str]:
    """Where a structured result still carries a null, false, zero, empty string or empty list/object."""
    if isinstance(value, dict):
        mapping = cast(dict[str, Any], value)
        found = [f"{path}.{k}" for k, v in mapping.items() if v in (None, False, 0, "", [], {}) and k != "agents"]
        for k, v in mapping.items():
            found += empties(v, f"{path}.{k}")
        return found
    if isinstance(value, list):
        items = cast(list[Any], value)
        return [p for i, v in enumerate(items) for p in empties(v, f"{path}[{i}]")]
    return []


async def test_tool_schemas_fit_the_budget(client: Any) -> None:
    tools = (await client.list_tools()).tools
    sizes = {t.name: model_facing_chars(t) for t in tools}
    assert sum(n for name, n in sizes.items() if name != "merge_agent") <= EIGHT_TOOLS_CHARS, sizes
    assert sum(sizes.values()) < ALL_TOOLS_CHARS, sizes


async def test_every_parameter_is_described(client: Any) -> None:
    tools = (await client.list_tools()).tools
    missing = [p for t in tools for p in undescribed(t.input_schema, t.name)]
    assert missing == []
    for t in tools:
        assert t.description and "\n" not in t.description and "  " not in t.description, t.name
        optional = set(t.input_schema["properties"]) - set(t.input_schema.get("required", []))
        assert [p for p in optional if "default" not in t.input_schema["properties"][p]["description"]] == [], t.name
        assert all("title" not in prop for prop in t.input_schema["properties"].values()), t.name
    runner = next(t for t in tools if t.name == "create_agent").input_schema["properties"]["runner"]
    assert "command" in runner["description"] and "anthropic" in runner["description"]
    status = next(t for t in tools if t.name == "get_agent_status").input_schema["properties"]["status"]
    assert status["items"]["enum"] == ["queued", "running", "idle", "failed", "stopped"]


async def test_results_are_compact_and_the_text_is_not_the_json(client: Any) -> None:
    created = await client.call_tool("create_agent", {"name": "c1", "template": "echo", "prompt": "hello"})
    await wait_all(client, ["c1"])
    results = {
        "create_agent": created,
        "wait_for_agents": await client.call_tool("wait_for_agents", {"agents": ["c1"], "timeout_s": 5}),
        "get_agent_status": await client.call_tool("get_agent_status", {}),
        "run_agents": await client.call_tool("run_agents", {"runs": [{"agent": "echo", "input": "x" * 500}]}),
        "get_agent_output": await client.call_tool("get_agent_output", {"agent": "c1"}),
    }
    for tool, res in results.items():
        structured = ok(res)
        assert empties(structured) == [], (tool, structured)
        [text] = [c.text for c in res.content]
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert len(text) < 2 * len(json.dumps(structured)) + 200, (tool, text)
    [row] = ok(results["get_agent_status"])["agents"]
    assert set(row) == {"name", "status", "turn"}, row  # idle, cost unknown (command runner), no error
    [run] = ok(results["run_agents"])["batch"]["runs"]
    assert run["truncated"] and run["result_chars"] == len("echo: " + "x" * 500) and len(run["result"]) == 200
    whole = await call(client, "run_agents", runs=[{"agent": "echo", "input": "y" * 500}], result_chars=20_000)
    assert whole["batch"]["runs"][0]["result"] == "echo: " + "y" * 500
    assert "c1: idle" in results["get_agent_status"].content[0].text


async def test_wait_returns_what_finished_and_what_runs(client: Any) -> None:
    await call(client, "create_agent", name="fast", template="echo", prompt="quick one")
    await call(client, "create_agent", name="slow", template="sleeper", prompt="30")
    await wait_all(client, ["fast"])
    out = await call(client, "wait_for_agents", agents=["fast", "slow"], timeout_s=0.5)
    assert "done" in out and not out["done"] and out["still_running"] == ["slow"]
    assert out["finished"] == [{"name": "fast", "status": "succeeded", "turn": 1, "result": "echo: quick one"}]
    assert "agents" not in out  # no full rows
    await call(client, "delete_agent", agents="all")


async def test_default_status_is_bounded_and_pages_everyone(client: Any) -> None:
    names = [f"idle-{i:02d}" for i in range(25)]
    for n in names:
        await call(client, "create_agent", name=n, template="echo")  # created idle: no process
    await call(client, "create_agent", name="busy", template="sleeper", prompt="30")
    out = await call(client, "get_agent_status")
    assert out["fleet"]["agents"] == 26 and len(out["agents"]) == 20
    assert out["agents"][0]["name"] == "busy"  # running first
    assert out["not_shown"] == {"idle": 6} and out["next_cursor"]
    seen: list[str] = []
    cursor = out["next_cursor"]
    while cursor:
        page = await call(client, "get_agent_status", limit=7, cursor=cursor)
        assert len(page["agents"]) <= 7
        seen += [r["name"] for r in page["agents"]]
        cursor = page.get("next_cursor")
    assert sorted(seen) == sorted([*names, "busy"])  # every agent exactly once
    idle = await call(client, "get_agent_status", status=["idle"], limit=200)
    assert [r["name"] for r in idle["agents"]] == names and "next_cursor" not in idle
    one = await call(client, "get_agent_status", agents=["idle-03", "busy"])
    assert [r["name"] for r in one["agents"]] == ["idle-03", "busy"] and one["agents"][1]["limits"]
    assert "cursor" in err(await client.call_tool("get_agent_status", {"cursor": "nonsense"}))
    await call(client, "delete_agent", agents="all")
