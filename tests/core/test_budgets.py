"""Budgets that bound spend, measured against a scripted model that never stops asking for tools (every request
costs the same known amount): the agent's whole-life max_cost_usd, the defaults of an ad-hoc agent, the fleet's
daily budget, a batch's budget; options a runner cannot honour are refused at creation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client

from agent_fleet_mcp.cli import main
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.runners import forkserver
from agent_fleet_mcp.server import build_server
from agent_fleet_mcp.testing import Reply, ScriptedModelServer, ToolCall, When
from agent_fleet_mcp.trust import trust_files

from .helpers import call, err

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-5-5"  # $2 / MTok input, $10 / MTok output
USAGE = {"input_tokens": 100_000, "output_tokens": 1_000}
REQUEST_USD = 0.21  # what every request of the looping model costs: 0.2 + 0.01
WAIT_S = 45.0
LOOPER = f"""---
name: looper
description: "Test: an anthropic agent (the scripted looping model); budget set high so only the batch's bounds it."
runner: anthropic
model: {MODEL}
max_cost_usd: 50
---
Keep working.
"""


def looping(*extra: When) -> ScriptedModelServer:
    """A model that asks for another tool call on every request, forever."""
    return ScriptedModelServer([*extra, When(lambda _: True, ToolCall("list_files", {"path": "."}), times=None)],
                               usage=USAGE)  # fmt: skip


def spent(srv: ScriptedModelServer) -> float:
    """What the model provider would bill: requests received x the price of one."""
    return round(len(srv.message_requests) * REQUEST_USD, 6)


@contextmanager
def model_env(tmp_path: Path, fleet_env: dict[str, str], srv: ScriptedModelServer) -> Generator[dict[str, str]]:
    catalog = tmp_path / "catalog"
    catalog.mkdir(exist_ok=True)
    (catalog / "looper.md").write_text(LOOPER)
    trust_files(Path(fleet_env["AGENT_FLEET_HOME"]), [catalog / "looper.md"])  # as `agent-fleet trust` does
    env = dict(fleet_env, ANTHROPIC_BASE_URL=srv.base_url, ANTHROPIC_API_KEY="test",
               AGENT_FLEET_AGENTS=f"{fleet_env['AGENT_FLEET_AGENTS']}:{catalog}")  # fmt: skip
    try:
        yield env
    finally:
        forkserver.stop(Path(env["AGENT_FLEET_HOME"]))


@asynccontextmanager
async def server(project: Path, env: dict[str, str]) -> AsyncGenerator[Any]:
    """An in-process server configured from the environment, as `agent-fleet-mcp` is."""
    settings = dataclasses.replace(Settings.from_env(env, project_dir=project), poll_interval_s=0.05)
    async with Client(build_server(settings)) as c:
        try:
            yield c
        finally:
            await call(c, "delete_agent", agents="all")


async def wait(c: Any, agents: list[str] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"timeout_s": WAIT_S}
    if agents:
        args["agents"] = agents
    return await call(c, "wait_for_agents", **args)


async def test_max_cost_covers_the_agents_whole_life(tmp_path: Path, project: Path, fleet_env: dict[str, str]) -> None:
    """max_cost_usd 1: over three commanded turns the model is paid at most $1 + one request, not $1 a turn."""
    with looping() as srv, model_env(tmp_path, fleet_env, srv) as env:
        async with server(project, env) as c:
            await call(c, "create_agent", name="loop", runner="anthropic", model=MODEL, max_cost_usd=1.0, prompt="go")
            assert (await wait(c, ["loop"]))["done"]
            refusals: list[str] = []
            for _ in range(2):
                res = await c.call_tool("command_agent", {"agent": "loop", "prompt": "go on"})
                if res.is_error:
                    refusals.append(err(res))
                else:
                    assert (await wait(c, ["loop"]))["done"]
            row = (await call(c, "get_agent_status", agents=["loop"]))["agents"][0]
        assert spent(srv) <= 1.0 + REQUEST_USD, (spent(srv), row)
        assert row["cost_usd"] == pytest.approx(spent(srv))
        assert row["turns"] == 1 and row["turn_status"] == "failed" and "max_cost_usd" in row["error"]
        assert row["limits"]["cost_left_usd"] == 0.0
        assert len(refusals) == 2 and all("remaining $0" in r for r in refusals), refusals


async def test_an_ad_hoc_agent_gets_the_fleet_defaults(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    """No limits given: the env's AGENT_FLEET_DEFAULT_MAX_COST_USD stops the looping model; status shows them."""
    with looping() as srv, model_env(tmp_path, fleet_env, srv) as env:
        env.update(AGENT_FLEET_DEFAULT_MAX_COST_USD="0.5", AGENT_FLEET_DEFAULT_MAX_TURNS="100")
        async with server(project, env) as c:
            await call(c, "create_agent", name="adhoc", runner="anthropic", model=MODEL, prompt="go")
            done = await wait(c, ["adhoc"])
            row = (await call(c, "get_agent_status", agents=["adhoc"]))["agents"][0]
        assert done["done"], f"still looping after {WAIT_S:g} s: ${spent(srv)} spent"
        assert spent(srv) <= 0.5 + REQUEST_USD
        assert row["turn_status"] == "failed" and "max_cost_usd" in row["error"]
        assert row["limits"] == {
            "max_turns": 100, "timeout_s": 3600.0, "max_cost_usd": 0.5, "max_tokens": 20_000_000,
            "cost_left_usd": 0.0, "tokens_left": 20_000_000 - len(srv.message_requests) * 101_000,
        }  # fmt: skip


async def test_max_tokens_covers_the_agents_whole_life(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    with looping() as srv, model_env(tmp_path, fleet_env, srv) as env:
        async with server(project, env) as c:
            await call(c, "create_agent", name="tok", runner="anthropic", model=MODEL, max_tokens=250_000, prompt="go")
            row = (await wait(c, ["tok"]))["finished"][0]
        assert len(srv.message_requests) == 3  # 101k tokens a request: the third reaches 250k
        assert row["status"] == "failed" and "max_tokens" in row["result"]


async def test_the_fleets_daily_budget_stops_running_turns_and_new_ones(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    with looping() as srv, model_env(tmp_path, fleet_env, srv) as env:
        env["AGENT_FLEET_BUDGET_USD"] = "1"
        async with server(project, env) as c:
            await call(c, "create_agent", name="idle", template="sleeper", prompt="120")  # reports no cost itself
            await call(c, "create_agent", name="spender", runner="anthropic", model=MODEL, max_cost_usd=50,
                       prompt="go")  # fmt: skip
            done = await wait(c)
            rows = {r["name"]: r for r in done["finished"]}
            refused = await c.call_tool("create_agent", {"name": "late", "template": "echo", "prompt": "hi"})
            late = await c.call_tool("command_agent", {"agent": "idle", "prompt": "5"})
        assert done["done"], f"the fleet budget did not stop the fleet in {WAIT_S:g} s: ${spent(srv)} spent"
        assert spent(srv) <= 1.0 + REQUEST_USD
        for name in ("idle", "spender"):
            assert rows[name]["status"] == "failed", rows[name]
            assert "fleet's daily budget" in rows[name]["result"], rows[name]
        assert "AGENT_FLEET_BUDGET_USD" in err(refused) and "remaining $0" in err(refused)
        assert "remaining $0" in err(late)

    def cost() -> dict[str, Any]:
        res = CliRunner().invoke(
            main, ["cost", "--json"], env={k: env[k] for k in ("AGENT_FLEET_HOME", "AGENT_FLEET_BUDGET_USD")}
        )
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    budget = (await anyio.to_thread.run_sync(cost))["budget"]
    assert budget["budget_usd"] == 1.0 and budget["left_usd"] == 0.0
    assert budget["spent_today_usd"] == pytest.approx(spent(srv))


async def test_a_batch_budget_bounds_the_batch(tmp_path: Path, project: Path, fleet_env: dict[str, str]) -> None:
    """run_agents(budget_usd=1): a looping run stops at $1 + one request; a run that would start once the budget
    is spent fails with that reason."""
    big = When(lambda body: "one big answer" in json.dumps(body["messages"][0]), Reply("done", usage={
        "input_tokens": 1_000_000}), times=1)  # fmt: skip
    with looping(big) as srv, model_env(tmp_path, fleet_env, srv) as env:
        async with server(project, env) as c:
            out = await call(c, "run_agents", runs=[{"agent": "looper", "input": "go"}], budget_usd=1.0, wait_s=WAIT_S)
            looped, requests = spent(srv), len(srv.message_requests)
            assert out["done"], f"the batch budget did not stop the run: ${looped} spent"
            [run] = out["batch"]["runs"]
            assert run["status"] == "failed" and "budget" in (run["reason"] or ""), run
            assert looped <= 1.0 + REQUEST_USD

            chain = await call(c, "run_agents", runs=[
                {"agent": "looper", "input": "one big answer", "id": "a"},
                {"agent": "looper", "input": "then {{a}}", "id": "b", "depends_on": ["a"]},
            ], budget_usd=1.0, wait_s=WAIT_S)  # fmt: skip
        assert chain["done"]
        a, b = chain["batch"]["runs"]
        assert a["status"] == "succeeded"  # one request of $2.01: over the budget by that request only
        assert b["status"] == "failed" and "budget_usd" in b["reason"] and "agent" not in b, b
        assert len(srv.message_requests) == requests + 1  # a's one request; b never reached the model


async def test_limits_a_runner_cannot_honour_are_refused(client: Any) -> None:
    res = await client.call_tool("create_agent", {"name": "c", "template": "echo", "max_cost_usd": 1.0})
    assert "max_cost_usd cannot apply to runner 'command'" in err(res)
    res = await client.call_tool("create_agent", {"name": "c", "template": "echo", "max_tokens": 1000})
    assert "max_tokens cannot apply to runner 'command'" in err(res)
    assert (await call(client, "get_agent_status"))["agents"] == []


async def test_max_turns_bounds_a_command_agents_life(client: Any) -> None:
    await call(client, "create_agent", name="e", template="echo", max_turns=2, prompt="one")
    assert (await call(client, "wait_for_agents", agents=["e"], timeout_s=30))["done"]
    await call(client, "command_agent", agent="e", prompt="two")
    assert (await call(client, "wait_for_agents", agents=["e"], timeout_s=30))["done"]
    res = await client.call_tool("command_agent", {"agent": "e", "prompt": "three"})
    assert "max_turns (2" in err(res)
    row = (await call(client, "get_agent_status", agents=["e"]))["agents"][0]
    assert row["turns"] == 2 and row["limits"]["max_turns"] == 2 and "max_cost_usd" not in row["limits"]
