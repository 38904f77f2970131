"""Model end of life, read from the installed anthropic SDK's own table: built-ins are current, a model near its
end of life is a warning (create result, list_task_agents problems, `agent-fleet agents`), past it an error naming
the replacement. "Today" is injected, so these hold on any date."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent_fleet_mcp import catalog, deprecation
from agent_fleet_mcp.catalog import builtin_agents_dir, load_catalog
from agent_fleet_mcp.cli import main
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.errors import InvalidRequest
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.pricing import price_of
from agent_fleet_mcp.runners.anthropic import DEFAULT_MODEL
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files

from .helpers import err, ok

EOL_SONNET_4_5 = dt.date(2026, 11, 30)
NEAR = EOL_SONNET_4_5 - dt.timedelta(days=10)
PAST = EOL_SONNET_4_5 + dt.timedelta(days=1)
FAR = EOL_SONNET_4_5 - dt.timedelta(days=deprecation.WARN_DAYS + 5)


def test_table_is_the_installed_sdks() -> None:
    from anthropic.resources.messages.messages import DEPRECATED_MODELS  # the table the SDK warns from

    table = deprecation.sdk_table()
    assert set(DEPRECATED_MODELS) <= set(table)
    for model, when in DEPRECATED_MODELS.items():
        assert table[model] == deprecation.parse_eol_date(when), model
    assert table["claude-sonnet-4-5"] == EOL_SONNET_4_5


@pytest.mark.parametrize(
    ("text", "day"),
    [("November 30th, 2026", dt.date(2026, 11, 30)), ("June 1st, 2026", dt.date(2026, 6, 1)),
     ("February 22nd, 2026", dt.date(2026, 2, 22)), ("2026-07-03", dt.date(2026, 7, 3)), ("soon", None)],
)  # fmt: skip
def test_parse_eol_date(text: str, day: dt.date | None) -> None:
    assert deprecation.parse_eol_date(text) == day


def test_near_end_of_life_warns_past_it_errors_with_the_replacement() -> None:
    assert deprecation.check_model("claude-sonnet-4-5", today=FAR) is None
    near = deprecation.check_model("claude-sonnet-4-5", today=NEAR)
    assert near is not None and near.level == "warning"
    assert "2026-11-30" in near.message and "claude-sonnet-5-5" in near.message
    past = deprecation.check_model("claude-sonnet-4-5-20250929", today=PAST)
    assert past is not None and past.level == "error" and past.replacement == "claude-sonnet-5-5"
    on_the_day = deprecation.check_model("claude-sonnet-4-5", today=EOL_SONNET_4_5)
    assert on_the_day is not None and on_the_day.level == "error"
    # provider spellings of a listed model are the same model
    bedrock = deprecation.check_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0", today=PAST)
    assert bedrock is not None and bedrock.level == "error"
    # same-tier replacement when the SDK names none
    haiku = deprecation.check_model("claude-3-5-haiku-latest", today=PAST)
    assert haiku is not None and haiku.replacement == "claude-haiku-5-5"
    assert deprecation.check_model("claude-sonnet-5-5", today=PAST) is None
    assert deprecation.check_model(None, today=PAST) is None


def test_every_builtin_is_current_today_and_priced() -> None:
    today = deprecation.utc_today()
    defs = [catalog.parse_definition(p) for p in sorted(builtin_agents_dir().glob("*.md"))]
    assert len(defs) == 6
    for d in defs:
        model = deprecation.effective_model(d.spec.runner, d.spec.model)
        assert model is not None
        assert deprecation.check_model(model, today=today) is None, (d.name, model)
        assert price_of(model) is not None, (d.name, model)
    assert deprecation.check_model(DEFAULT_MODEL, today=today) is None and price_of(DEFAULT_MODEL) is not None
    for model in deprecation.CURRENT.values():
        assert price_of(model) is not None and model not in deprecation.sdk_table()


def _fleet(tmp_path: Path, project: Path, fleet_env: dict[str, str], store: SqliteStore) -> Fleet:
    env = dict(fleet_env, ANTHROPIC_API_KEY="dummy")
    return Fleet(Settings(home=tmp_path / "home", project_dir=project, env=env), store)


@pytest.mark.anyio
async def test_create_agent_warns_near_and_refuses_past_end_of_life(
    tmp_path: Path, project: Path, fleet_env: dict[str, str]
) -> None:
    async with SqliteStore(tmp_path / "home" / "fleet.db") as store:
        fleet = _fleet(tmp_path, project, fleet_env, store)
        fleet.today = lambda: NEAR
        res = await fleet.create_agent(name="old", model="claude-sonnet-4-5")
        assert res.created and len(res.warnings) == 1 and "claude-sonnet-5-5" in res.warnings[0]
        fresh = await fleet.create_agent(name="new", model="claude-sonnet-5-5")
        assert fresh.warnings == ()
        fleet.today = lambda: PAST
        with pytest.raises(InvalidRequest, match=r"reached end of life on 2026-11-30.*'claude-sonnet-5-5'"):
            await fleet.create_agent(name="older", model="claude-sonnet-4-5")
        assert await store.get_agent("older") is None
        with pytest.raises(InvalidRequest, match="cannot run: create a new agent with model='claude-sonnet-5-5'"):
            await fleet.command_agent("old", "go")


async def _write_def(project: Path, name: str, model: str) -> None:
    (project / "agents").mkdir(exist_ok=True)
    (project / "agents" / f"{name}.md").write_text(
        f"---\nname: {name}\ndescription: d\nrunner: anthropic\nmodel: {model}\n---\nbody\n"
    )


@pytest.mark.anyio
async def test_tools_report_models_past_end_of_life(client: Any, project: Path, settings: Settings) -> None:
    """claude-opus-4-0 reached end of life on 2026-06-15 per the SDK table: true on any later date."""
    catalog.clear_cache()
    await _write_def(project, "old-opus", "claude-opus-4-0")
    trust_files(settings.home, [project / "agents" / "old-opus.md"])  # as `agent-fleet trust` does
    out = ok(await client.call_tool("list_task_agents", {"query": "old-opus"}))
    assert [a["name"] for a in out["agents"]] == ["old-opus"]
    [problem] = [p for p in out["problems"] if "old-opus" in p]
    assert "claude-opus-4-0" in problem and "2026-06-15" in problem and "claude-opus-5-5" in problem
    assert not [p for p in out["problems"] if "builtin_agents" in p]  # built-ins are current
    text = err(await client.call_tool("create_agent", {"name": "o", "template": "old-opus"}))
    assert "claude-opus-5-5" in text and "old-opus" in text
    text = err(await client.call_tool("create_agent", {"name": "o", "model": "claude-sonnet-4-20250514"}))
    assert "end of life" in text and "claude-sonnet-5-5" in text


def test_cli_agents_shows_model_notices(tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.clear_cache()
    monkeypatch.chdir(project)
    agents = project / "agents"
    agents.mkdir()
    (agents / "old.md").write_text("---\nname: old\nrunner: anthropic\nmodel: claude-3-7-sonnet-latest\n---\nb\n")
    env = {"AGENT_FLEET_HOME": str(tmp_path / "home"), "COLUMNS": "250"}
    trust_files(tmp_path / "home", [agents / "old.md"])
    res = CliRunner().invoke(main, ["agents"], env=env)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "model error" in flat and "old.md: model 'claude-3-7-sonnet-latest' reached end of life" in flat
    assert "use 'claude-sonnet-5-5' instead" in flat
    data = json.loads(CliRunner().invoke(main, ["agents", "--json"], env=env).output)
    assert any("claude-3-7-sonnet-latest" in p for p in data["problems"])
    assert load_catalog(project, env).definitions["old"].spec.model == "claude-3-7-sonnet-latest"
