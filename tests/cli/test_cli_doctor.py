"""`agent-fleet doctor`: one row per check, JSON with the same data, exit 1 only on a failure."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agent_fleet_mcp.cli import main


def test_doctor_reports_checks_and_missing_runners(tmp_path: Path) -> None:
    env = {"AGENT_FLEET_HOME": str(tmp_path / "home"), "PATH": str(tmp_path), "ANTHROPIC_API_KEY": "", "COLUMNS": "200"}
    runner = CliRunner()
    res = runner.invoke(main, ["doctor"], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "python" in res.stdout and "fleet home" in res.stdout
    data = json.loads(runner.invoke(main, ["doctor", "--json"], env=env, catch_exceptions=False).stdout)
    by = {c["name"]: c for c in data["checks"]}
    assert by["runner codex"]["level"] == "warn" and "not on PATH" in by["runner codex"]["detail"]
    assert by["runner anthropic"]["level"] == "warn" and by["runner anthropic"]["fix"]


def test_doctor_fails_when_home_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    res = CliRunner().invoke(main, ["doctor"], env={"AGENT_FLEET_HOME": str(home), "COLUMNS": "200"})
    assert res.exit_code == 1
    assert "not a directory" in res.stdout
