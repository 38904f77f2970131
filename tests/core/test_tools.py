"""The 9 tools through the real MCP client (in-process), driving real command-runner agent processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import call, err, wait_all

pytestmark = pytest.mark.anyio


async def test_tool_list_is_exactly_the_contract(client: Any) -> None:
    tools = (await client.list_tools()).tools
    names = sorted(t.name for t in tools)
    assert names == sorted(
        ["list_task_agents", "create_agent", "command_agent", "get_agent_status", "wait_for_agents",
         "get_agent_output", "delete_agent", "run_agents", "merge_agent"]
    )  # fmt: skip
    by = {t.name: t for t in tools}
    assert by["get_agent_status"].annotations.read_only_hint is True
    assert by["delete_agent"].annotations.destructive_hint is True
    assert by["create_agent"].annotations.idempotent_hint is True
    assert all(t.output_schema for t in tools)
    assert all(len(t.description or "") < 300 for t in tools)


async def test_list_task_agents_filters(client: Any) -> None:
    out = await call(client, "list_task_agents", tags=["test"])
    names = {a["name"] for a in out["agents"]}
    assert {"echo", "sleeper", "failer"} <= names
    only = await call(client, "list_task_agents", query="turn timeout must end it")
    assert [a["name"] for a in only["agents"]] == ["hanger-timeout"]
    builtin = await call(client, "list_task_agents", tags=["code-review"])
    assert "code-reviewer" in {a["name"] for a in builtin["agents"]}


async def test_create_run_and_read_result(client: Any, project: Path) -> None:
    created = await call(client, "create_agent", name="e1", template="echo", prompt="hello fleet")
    assert created["created"] is True and created["turn"] == 1
    assert created["agent"]["status"] in ("running", "queued", "idle")
    await wait_all(client, ["e1"])
    out = await call(client, "get_agent_output", agent="e1")
    assert out["turn_status"] == "succeeded"
    assert "echo: hello fleet" in out["text"]
    assert "truncated" not in out  # false: left out (compact output)
    assert Path(out["transcript_path"]).exists()
    status = await call(client, "get_agent_status", agents=["e1"])
    row = status["agents"][0]
    assert row["status"] == "idle" and row["turns"] == 1 and "error" not in row
    assert status["fleet"]["agents"] == 1


async def test_command_agent_continues_with_new_turn(client: Any) -> None:
    await call(client, "create_agent", name="e2", template="echo", prompt="one")
    await wait_all(client, ["e2"])
    cmd = await call(client, "command_agent", agent="e2", prompt="two")
    assert cmd["turn"] == 2
    await wait_all(client, ["e2"])
    out = await call(client, "get_agent_output", agent="e2")
    assert out["turn"] == 2 and "echo: two" in out["text"]
    first = await call(client, "get_agent_output", agent="e2", turn=1)
    assert "echo: one" in first["text"]


async def test_failed_turn_reports_exit_and_stderr(client: Any) -> None:
    await call(client, "create_agent", name="f1", template="failer", prompt="please fail")
    await wait_all(client, ["f1"])
    status = await call(client, "get_agent_status", agents=["f1"])
    row = status["agents"][0]
    assert row["status"] == "failed" and row["turn_status"] == "failed"
    assert "exited with code 3" in row["error"] and "boom" in row["error"]
    assert status["fleet"]["failed"] == 1


async def test_timeout_kills_turn(client: Any, no_leftover_groups: set[int]) -> None:
    await call(client, "create_agent", name="h1", template="hanger-timeout", prompt="hang")
    started = time.monotonic()
    await wait_all(client, ["h1"], timeout_s=15)
    assert time.monotonic() - started < 10
    row = (await call(client, "get_agent_status", agents=["h1"]))["agents"][0]
    assert row["turn_status"] == "failed" and "timed out" in row["error"]


async def test_output_is_capped_with_cursor(client: Any) -> None:
    await call(client, "create_agent", name="big", template="echo", prompt="x" * 9000)
    await wait_all(client, ["big"])
    first = await call(client, "get_agent_output", agent="big", max_chars=4000)
    assert len(first["text"]) == 4000 and first["truncated"] and first["next_cursor"] == 4000
    rest = await call(client, "get_agent_output", agent="big", max_chars=20000, cursor=first["next_cursor"])
    assert first["text"] + rest["text"] == "echo: " + "x" * 9000
    assert "truncated" not in rest and "next_cursor" not in rest
    whole = await call(client, "get_agent_output", agent="big", mode="transcript", max_chars=20000)
    assert "RESULT: echo: xxx" in whole["text"] and not whole.get("truncated")
    tail = await call(client, "get_agent_output", agent="big", mode="tail", max_chars=500)
    assert tail["text"] == whole["text"][-500:] and tail["truncated"] is True
    head = await call(client, "get_agent_output", agent="big", mode="transcript", max_chars=300)
    assert head["text"] == whole["text"][:300] and head["next_cursor"] == 300


async def test_create_is_idempotent(client: Any) -> None:
    a = await call(client, "create_agent", name="same", template="sleeper", prompt="0.5")
    b = await call(client, "create_agent", name="same", template="sleeper", prompt="0.5")
    assert a["created"] is True and b["created"] is False
    status = await call(client, "get_agent_status")
    assert [r["name"] for r in status["agents"]] == ["same"] and status["agents"][0]["turn"] == 1
    msg = err(await client.call_tool("create_agent", {"name": "same", "template": "sleeper", "prompt": "9"}))
    assert "already exists" in msg and "command_agent" in msg
    key1 = await call(client, "create_agent", name="k1", template="echo", prompt="p", idempotency_key="abc")
    key2 = await call(client, "create_agent", name="k1", template="echo", prompt="p", idempotency_key="abc")
    assert key1["agent"]["name"] == key2["agent"]["name"] and key2["created"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"name": "bad name!", "template": "echo"}, "bad agent name"),
        ({"name": "ok", "template": "nope"}, "unknown template"),
        ({"name": "ok", "runner": "mystery"}, "unknown runner"),
        ({"name": "ok", "template": "echo", "cwd": "/definitely/not/here"}, "does not exist"),
        ({"name": "ok", "template": "echo", "prompt": "x" * 200_001}, "limit"),
        ({"name": "ok", "template": "echo", "prompt": "   "}, "empty"),
        ({"name": "ok", "runner": "command"}, "catalog"),
    ],
)
async def test_bad_create_inputs_change_nothing(client: Any, args: dict[str, Any], needle: str) -> None:
    msg = err(await client.call_tool("create_agent", args))
    assert needle in msg
    assert (await call(client, "get_agent_status"))["agents"] == []


async def test_cwd_not_a_directory(client: Any, project: Path) -> None:
    f = project / "file.txt"
    f.write_text("x")
    assert "not a directory" in err(await client.call_tool("create_agent", {"name": "c", "template": "echo",
                                                                             "cwd": str(f)}))  # fmt: skip


async def test_unknown_agent_errors(client: Any) -> None:
    assert "no agent named" in err(await client.call_tool("command_agent", {"agent": "ghost", "prompt": "x"}))
    assert "no agent named" in err(await client.call_tool("get_agent_output", {"agent": "ghost"}))
    assert "no agent named" in err(await client.call_tool("delete_agent", {"agents": ["ghost"]}))
    assert "no agent named" in err(await client.call_tool("wait_for_agents", {"agents": ["ghost"]}))


async def test_delete_all_stops_everything(client: Any, no_leftover_groups: set[int]) -> None:
    from agent_fleet_mcp.store.sqlite import SqliteStore

    for i, template in enumerate(["hanger", "stubborn", "spawner", "sleeper"]):
        await call(client, "create_agent", name=f"d{i}", template=template, prompt="60")
    status = await call(client, "get_agent_status")
    assert status["fleet"]["running"] == 4
    home = Path((await call(client, "get_agent_output", agent="d0", mode="tail"))["transcript_path"]).parents[3]
    async with SqliteStore(home / "fleet.db") as store:
        pids = [t.pid for t in await store.turns_with_status("running")]
    assert len(pids) == 4 and all(pids)
    no_leftover_groups.update(p for p in pids if p)
    time.sleep(0.5)  # let stubborn install its SIGTERM handler and spawner fork its grandchild
    started = time.monotonic()
    out = await call(client, "delete_agent", agents="all")
    took = time.monotonic() - started
    assert sorted(d["name"] for d in out["deleted"]) == ["d0", "d1", "d2", "d3"]
    assert all(d["stopped_turns"] == 1 for d in out["deleted"])
    assert took < 3.0, took
    assert (await call(client, "get_agent_status"))["agents"] == []
    # the deleted names are free again
    await call(client, "create_agent", name="d0", template="echo", prompt="again")


async def test_resources(client: Any) -> None:
    import json

    await call(client, "create_agent", name="res", template="echo", prompt="resource me")
    await wait_all(client, ["res"])
    uris = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "fleet://agents" in uris
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "fleet://agents/{agent}" in templates
    summary = json.loads((await client.read_resource("fleet://agents")).contents[0].text)
    assert summary["fleet"]["agents"] == 1 and summary["agents"][0]["name"] == "res"
    one = json.loads((await client.read_resource("fleet://agents/res")).contents[0].text)
    assert one["status"]["turn_status"] == "succeeded" and "echo: resource me" in one["recent_activity"]


@pytest.mark.parametrize(
    ("runner", "hint"),
    [("codex", "npm install -g @openai/codex"), ("gemini", "npm install -g @google/gemini-cli")],
)
async def test_missing_cli_is_a_clear_error_at_create(tmp_path: Path, project: Path, runner: str, hint: str) -> None:
    from mcp import Client

    from agent_fleet_mcp.config import Settings
    from agent_fleet_mcp.server import build_server

    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path), "AGENT_FLEET_FORKSERVER_WARM": "0"}
    settings = Settings(home=tmp_path / "home", project_dir=project, env=env)
    async with Client(build_server(settings)) as c:
        msg = err(await c.call_tool("create_agent", {"name": "x", "runner": runner, "prompt": "hi"}))
        assert f"{runner} is not installed" in msg and hint in msg
        assert (await call(c, "get_agent_status"))["agents"] == []


async def test_anthropic_without_key_fails_fast(tmp_path: Path, project: Path) -> None:
    from mcp import Client

    from agent_fleet_mcp.config import Settings
    from agent_fleet_mcp.server import build_server

    env = {"PATH": "/usr/bin:/bin", "AGENT_FLEET_FORKSERVER_WARM": "0"}
    settings = Settings(home=tmp_path / "home", project_dir=project, env=env)
    async with Client(build_server(settings)) as c:
        msg = err(await c.call_tool("create_agent", {"name": "x", "template": "scout", "prompt": "look"}))
        assert "ANTHROPIC_API_KEY is not set" in msg


async def test_resource_change_notifications(client: Any) -> None:
    import anyio

    async with client.listen(resource_subscriptions=["fleet://agents", "fleet://agents/note"]) as sub:
        await call(client, "create_agent", name="note", template="echo", prompt="notify me")
        seen: set[str] = set()
        with anyio.fail_after(10):
            async for event in sub:
                seen.add(str(event.uri))
                if seen >= {"fleet://agents", "fleet://agents/note"}:
                    break
    assert seen >= {"fleet://agents", "fleet://agents/note"}


async def test_delete_reaches_descendants_that_left_the_group(client: Any) -> None:
    import uuid

    import anyio

    from .proc_scan import carrying, wait_until_none

    marker = f"esc-{uuid.uuid4().hex}"  # the prompt: in $AGENT_PROMPT of the script and of its escaped grandchild
    await call(client, "create_agent", name="esc", template="escaper", prompt=marker)
    with anyio.fail_after(10):
        while "escaped " not in (await call(client, "get_agent_output", agent="esc", mode="tail"))["text"]:
            await anyio.sleep(0.1)
    assert len(carrying(marker)) >= 2  # the script and the grandchild in a session of its own
    await call(client, "delete_agent", agents=["esc"])
    assert wait_until_none(marker) == []


async def test_output_of_deleted_agent_until_purged(client: Any) -> None:
    await call(client, "create_agent", name="gone", template="echo", prompt="remember me")
    await wait_all(client, ["gone"])
    await call(client, "delete_agent", agents=["gone"])
    out = await call(client, "get_agent_output", agent="gone")
    assert "echo: remember me" in out["text"]
    await call(client, "create_agent", name="gone2", template="echo", prompt="and purge me")
    await wait_all(client, ["gone2"])
    transcript = Path((await call(client, "get_agent_output", agent="gone2"))["transcript_path"])
    assert transcript.exists()
    await call(client, "delete_agent", agents=["gone2"], purge=True)
    assert "no agent named" in err(await client.call_tool("get_agent_output", {"agent": "gone2"}))
    assert not transcript.exists()
