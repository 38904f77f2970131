"""Bad input is refused at the edge with a clear, bounded message (each test fails on the code before the fix):
reserved names, unusable characters, size limits on every string, long prompts to command agents, bounded quoting,
over-long cwd, and argument-validation errors in the tool's own words (never pydantic internals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp import inputs
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.trust import trust_files

from .helpers import call, err, wait_all

pytestmark = pytest.mark.anyio

PYDANTIC_TELLS = ("pydantic", "Arguments", "validation error", "Input should", "type=")

SIZES_AGENT = f"""---
name: prompt-sizes
description: reports how the prompt arrived
runner: command
command: ["{{python}}", "{Path(__file__).parents[1] / "scripts" / "prompt_sizes.py"}"]
---
body
"""


async def test_reserved_names_are_refused(client: Any) -> None:
    await call(client, "create_agent", name="keep-me", template="echo")
    for name in ("all", "ALL", "any", "none"):
        msg = err(await client.call_tool("create_agent", {"name": name, "template": "echo"}))
        assert "reserved" in msg and "pick another name" in msg, msg
    names = [a["name"] for a in (await call(client, "get_agent_status"))["agents"]]
    assert names == ["keep-me"]


@pytest.mark.parametrize(
    ("args", "param"),
    [({"name": "x", "template": "echo", "prompt": "hi\x00there"}, "prompt"),
     ({"name": "x", "template": "echo", "prompt": "bell\x07"}, "prompt"),
     ({"name": "x\x00", "template": "echo"}, "name"),
     ({"name": "x", "template": "echo", "system_prompt": "be \x00 good"}, "system_prompt"),
     ({"name": "x", "template": "echo", "prompt": "half a pair \ud800 here"}, "prompt")],
)  # fmt: skip
async def test_unusable_characters_are_refused_at_the_edge(client: Any, args: dict[str, Any], param: str) -> None:
    msg = err(await client.call_tool("create_agent", args))
    assert f"`{param}` contains" in msg and "remove it" in msg, msg
    assert (await call(client, "get_agent_status"))["agents"] == []


async def test_unusable_characters_in_command_and_run_inputs(client: Any) -> None:
    await call(client, "create_agent", name="e", template="echo")
    msg = err(await client.call_tool("command_agent", {"agent": "e", "prompt": "a\x00b"}))
    assert "`prompt` contains NUL" in msg
    msg = err(await client.call_tool("run_agents", {"runs": [{"agent": "echo", "input": "a\x00b"}], "wait_s": 0}))
    assert "`runs[0].input` contains NUL" in msg
    assert [a["name"] for a in (await call(client, "get_agent_status"))["agents"]] == ["e"]


async def test_long_prompt_reaches_a_command_agent(client: Any, project: Path, settings: Settings) -> None:
    (project / "agents").mkdir()
    (project / "agents" / "prompt-sizes.md").write_text(SIZES_AGENT)
    trust_files(settings.home, [project / "agents" / "prompt-sizes.md"])  # as `agent-fleet trust` does
    big = ("x" * 99 + "\n") * 1990  # 199,000 chars: over Linux's 128 KiB limit for one environment entry
    assert len(big) == 199_000
    await call(client, "create_agent", name="big", template="prompt-sizes", prompt=big)
    await call(client, "create_agent", name="small", template="prompt-sizes", prompt="short task")
    await wait_all(client, ["big", "small"], timeout_s=45)
    out = await call(client, "get_agent_output", agent="big")
    assert out["turn_status"] == "succeeded", out
    assert "stdin=199000 file=199000 env=0 same=True" in out["text"]
    small = await call(client, "get_agent_output", agent="small")
    assert "stdin=10 file=10 env=10 same=True" in small["text"]


async def test_system_prompt_and_other_strings_have_size_limits(client: Any) -> None:
    msg = err(await client.call_tool("create_agent", {"name": "x", "system_prompt": "s" * 10_000_000}))
    assert "`system_prompt` is 10,000,000 chars; the limit is 30,000" in msg
    msg = err(await client.call_tool("run_agents", {"runs": [{"agent": "echo", "input": "i"}] * 51}))
    assert "`runs` has 51 items; the limit is 50" in msg
    msg = err(await client.call_tool("list_task_agents", {"tags": ["t"] * 33}))
    assert "`tags` has 33 items" in msg
    many = [{"agent": "echo", "input": "i" * 199_000, "id": f"r{i}"} for i in range(20)]
    msg = err(await client.call_tool("run_agents", {"runs": many, "wait_s": 0}))
    assert "the limit is 2,000,000 per call" in msg
    assert (await call(client, "get_agent_status"))["agents"] == []


def _string_params(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """(path for an argument, leaf name, property schema) of every string-accepting property, runs items included."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    defs = schema.get("$defs", {})

    def variants(node: dict[str, Any]) -> list[dict[str, Any]]:
        node = defs.get(node["$ref"].split("/")[-1], {}) if "$ref" in node else node
        return node.get("anyOf", [node])

    for name, prop in schema.get("properties", {}).items():
        for v in variants(prop):
            v = defs.get(v["$ref"].split("/")[-1], {}) if "$ref" in v else v
            if v.get("type") == "string":
                out.append((f"{prefix}{name}", name, v))
            if v.get("type") == "array":
                item = v.get("items", {})
                item = defs.get(item["$ref"].split("/")[-1], {}) if "$ref" in item else item
                if item.get("type") == "string":
                    out.append((f"{prefix}{name}[0]", name, item))
                if item.get("properties"):
                    out += _string_params({**item, "$defs": defs}, prefix=f"{prefix}{name}[0].")
    return out


async def test_every_string_of_every_tool_is_limited(client: Any) -> None:
    tools = (await client.list_tools()).tools
    checked = 0
    for tool in tools:
        for path, leaf, _ in _string_params(tool.input_schema):
            limit = inputs.STRING_LIMITS.get(leaf, inputs.MAX_OTHER_CHARS)
            value = "a" * (limit + 1)
            if "[0]." in path:  # a field of runs[0]
                outer, field = path.split("[0].", 1)
                inner: Any = [value] if field.endswith("[0]") else value
                args: dict[str, Any] = {outer: [{"agent": "echo", "input": "i", field.removesuffix("[0]"): inner}]}
            elif path.endswith("[0]"):
                args = {path[:-3]: [value]}
            else:
                args = {path: value}
            msg = err(await client.call_tool(tool.name, args))
            assert f"`{path}` is {limit + 1:,} chars; the limit is {limit:,}" in msg, (tool.name, path, msg)
            assert len(msg) < 400
            checked += 1
    assert checked >= 20


async def test_errors_quote_at_most_about_100_chars_of_a_bad_value(client: Any) -> None:
    long_name = "b" * 200 + "!"  # under the size limit, still a bad name
    msg = err(await client.call_tool("create_agent", {"name": long_name}))
    assert "bad agent name" in msg and "(201 chars)" in msg and len(msg) < 400
    msg = err(await client.call_tool("get_agent_status", {"agents": ["n" * 250]}))
    assert "no agent named" in msg and "(250 chars)" in msg and len(msg) < 400
    msg = err(await client.call_tool("create_agent", {"name": "t", "template": "q" * 250}))
    assert "unknown template" in msg and "(250 chars)" in msg and len(msg) < 1500
    msg = err(await client.call_tool("create_agent", {"name": "m" * 1_000_000}))
    assert len(msg) < 400


async def test_over_long_cwd_is_a_clear_error(client: Any, tmp_path: Path) -> None:
    for cwd in (str(tmp_path / ("d" * 300)), "/tmp/" + "/".join(["d" * 200] * 19)):
        msg = err(await client.call_tool("create_agent", {"name": "c", "template": "echo", "cwd": cwd}))
        assert "cwd" in msg and ("cannot be used" in msg or "does not exist" in msg), msg
        assert msg != "Error executing tool create_agent" and len(msg) < 500
    msg = err(await client.call_tool("create_agent", {"name": "c", "template": "echo", "cwd": "/" + "d" * 5000}))
    assert "`cwd` is 5,001 chars; the limit is 4,096" in msg


@pytest.mark.parametrize(
    ("tool", "args", "says"),
    [("get_agent_output", {"agent": "x", "max_chars": 5}, "`max_chars` must be a whole number from 200 to 20000"),
     ("get_agent_output", {"agent": "x", "turn": 0}, "`turn` must be a whole number at least 1"),
     ("get_agent_output", {"agent": "x", "mode": "all"}, "`mode` must be one of 'result', 'tail', 'transcript'"),
     ("get_agent_output", {}, "`agent` is required"),
     ("wait_for_agents", {"timeout_s": 100}, "`timeout_s` must be a number from 0 to 45; got 100"),
     ("wait_for_agents", {"until": "some"}, "`until` must be one of 'all', 'any'"),
     ("create_agent", {"name": "x", "max_turns": 0}, "`max_turns` must be a whole number from 1 to 1000"),
     ("create_agent", {"name": "x", "max_cost_usd": -1}, "`max_cost_usd` must be a number above 0"),
     ("create_agent", {"name": "x", "permission": "root"}, "`permission` must be one of 'readonly', 'readwrite'"),
     ("run_agents", {"runs": [], "wait_s": -1}, "`wait_s` must be a number from 0 to 45"),
     ("run_agents", {"runs": [{"agent": "echo", "input": "i", "extra": 1}]}, "`runs[0].extra` is not a parameter"),
     ("delete_agent", {"agents": 5}, "`agents` must be a string or a list of strings; got 5"),
     ("list_task_agents", {"tags": "x"}, "`tags` must be a list of strings"),
     ("command_agent", {"agent": "x"}, "`prompt` is required")],
)  # fmt: skip
async def test_validation_errors_in_the_tools_own_words(
    client: Any, tool: str, args: dict[str, Any], says: str
) -> None:
    msg = err(await client.call_tool(tool, args))
    assert says in msg, msg
    assert msg.startswith(f"{tool}: invalid arguments: ") and msg.endswith(f"call {tool} again.")
    assert not any(t in msg for t in PYDANTIC_TELLS), msg
