"""`agent-fleet agents`: the catalog with sources, tags, shadowed definitions and definition errors; `demo` exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_fleet_mcp import catalog
from agent_fleet_mcp.cli import main

GOOD = """---
name: {name}
description: {desc}
tags: [{tags}]
runner: command
command: ["true"]
---
body
"""


def _catalog_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    project, first, second = tmp_path / "project", tmp_path / "first", tmp_path / "second"
    for d in (project, first, second):
        d.mkdir()
    (first / "lint.md").write_text(GOOD.format(name="lint", desc="first lint", tags="quality, fast"))
    (second / "lint.md").write_text(GOOD.format(name="lint", desc="second lint", tags="quality"))
    (second / "broken.md").write_text("---\nname: broken\nrunner: nope\n---\nbody\n")
    return project, first, second


def test_agents_lists_sources_tags_shadowed_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.clear_cache()
    project, first, second = _catalog_dirs(tmp_path)
    monkeypatch.chdir(project)  # the catalog's project folder is the current directory
    env = {"AGENT_FLEET_AGENTS": f"{first}:{second}", "AGENT_FLEET_HOME": str(tmp_path / "home"), "COLUMNS": "250"}
    runner = CliRunner()
    first_run = runner.invoke(main, ["agents"], env=env, catch_exceptions=False)
    assert first_run.exit_code == 0, first_run.output
    assert "lint" not in first_run.stdout.split("not trusted")[0]  # untrusted files define nothing yet
    for path in (first / "lint.md", second / "lint.md", second / "broken.md"):
        assert f"review it, then: agent-fleet trust {path}" in first_run.stdout
    assert "3 definition file(s) are not used until you trust them" in first_run.stdout
    trusted = runner.invoke(main, ["trust", "--all"], env=env, catch_exceptions=False)
    assert trusted.exit_code == 0, trusted.output
    assert f"trusted {first / 'lint.md'}" in trusted.stdout and "defines 'lint': runner command" in trusted.stdout
    res = runner.invoke(main, ["agents"], env=env, catch_exceptions=False)
    data = json.loads(runner.invoke(main, ["agents", "--json"], env=env, catch_exceptions=False).stdout)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "lint" in out and "quality, fast" in out and str(first / "lint.md") in out
    assert f"shadowed lint: {second / 'lint.md'} is hidden by {first / 'lint.md'}" in out
    assert "built-in scout.md" in out
    assert "definition error" in out and "broken.md" in out and "nope" in out
    assert "scout" in out  # built-ins are listed too
    by = {a["name"]: a for a in data["agents"]}
    assert by["lint"]["description"] == "first lint" and by["lint"]["tags"] == ["quality", "fast"]
    assert data["shadowed"] == [{"name": "lint", "used": str(first / "lint.md"), "shadowed": str(second / "lint.md")}]
    assert any("broken.md" in p for p in data["problems"])
    assert str(first) in data["dirs"]


def test_demo_command_is_registered() -> None:
    res = CliRunner().invoke(main, ["demo", "--help"])
    assert res.exit_code == 0 and "--live" in res.stdout and "--keep" in res.stdout
