"""`agent-fleet status` (table, --json, --all, one agent) and `cost`, on a home filled by real command agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_fleet_mcp.reader import EMPTY_FLEET
from agent_fleet_mcp.reader_reports import parse_since
from agent_fleet_mcp.store.sqlite import SqliteStore

from .conftest import READS, WRITES, Home, invoke


def test_status_table(populated: Home) -> None:
    res = invoke(populated.path, "status")
    assert res.exit_code == 0, res.output
    out = res.stdout
    for name in ("echo-1", "failer-1", "files-1", "a-", "c-"):
        assert name in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert " idle " in rows["echo-1"] and "turn 2 succeeded" in rows["echo-1"]
    assert " failed " in rows["failer-1"] and "exited with code 3" in rows["failer-1"]
    assert " ? " in rows["echo-1"]  # a command agent has no known cost: '?' not $0
    assert "$0.0421" in rows["files-1"]
    assert "0 running · 0 queued · 5 idle · 1 failed" in out
    assert "cost $0.0421 + ? (5 unpriced agents)" in out
    assert "✗ failer-1: exit: the process exited with code 3: boom: disk full" in out
    assert "batch b_" not in out  # finished batches only with --all


def test_status_all_shows_batch_waves(populated: Home) -> None:
    out = invoke(populated.path, "status", "--all").stdout
    assert "batch b_" in out and "succeeded  3/3 runs done" in out
    assert "wave 1: a ✓, b ✓" in out
    assert "wave 2: c ✓ (after a, b)" in out


def test_status_json(populated: Home) -> None:
    data = json.loads(invoke(populated.path, "status", "--json").stdout)
    by = {a["name"]: a for a in data["agents"]}
    assert by["echo-1"]["status"] == "idle" and by["echo-1"]["turns"] == 2 and by["echo-1"]["cost_usd"] is None
    assert "exited with code 3" in by["failer-1"]["last_error"]
    assert by["files-1"]["reads"] == len(READS) and by["files-1"]["writes"] == len(WRITES)
    assert data["fleet"]["failed"] == 1 and data["fleet"]["idle"] == 5 and data["fleet"]["cost_usd"] == 0.0421
    assert data["batches"] == [] and data["unpriced_agents"] == 5
    every = json.loads(invoke(populated.path, "status", "--json", "--all").stdout)
    [batch] = every["batches"]
    assert {r["id"]: r["wave"] for r in batch["runs"]} == {"a": 1, "b": 1, "c": 2}
    assert batch["runs"][2]["depends_on"] == ["a", "b"] and batch["status"] == "succeeded"
    assert batch["busy_s"] is not None and batch["wall_s"] is not None
    assert batch["saved_s"] == pytest.approx(batch["busy_s"] - batch["wall_s"], abs=0.11)


def test_status_of_one_agent_files_and_result(populated: Home) -> None:
    res = invoke(populated.path, "status", "files-1")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "files read (25)" in out and "src/mod_00.py" in out and "src/mod_19.py" in out
    assert "src/mod_20.py" not in out and "… and 5 more" in out
    assert "files written (2)" in out and "out/report.md" in out and "out/data.json" in out
    assert "result of turn 1" in out and "echo: touch files" in out
    assert "12.3k/678" in out and "$0.0421" in out
    detail = json.loads(invoke(populated.path, "status", "files-1", "--json").stdout)
    assert detail["reads"]["total"] == 25 and len(detail["reads"]["shown"]) == 20
    assert detail["writes"]["shown"] == WRITES and detail["result_preview"] == "echo: touch files"


def test_status_of_failed_agent(populated: Home) -> None:
    out = invoke(populated.path, "status", "failer-1").stdout
    assert "failed" in out and "files read (0) none recorded" in out
    assert "last error: exit: the process exited with code 3: boom: disk full" in out


def test_status_of_agent_with_markup_in_prompt(populated: Home) -> None:
    out = invoke(populated.path, "status", "echo-1").stdout
    assert "second [bold]turn[/bold]" in out and "echo: second [bold]turn[/bold]" in out
    assert "hello fleet" in out  # the turn list shows both turns


def test_unknown_agent_is_exit_1_with_the_agents_listed(populated: Home) -> None:
    res = invoke(populated.path, "status", "echo1")
    assert res.exit_code == 1
    assert "no agent named 'echo1'" in res.stderr and "Did you mean 'echo-1'?" in res.stderr
    assert "failer-1" in res.stderr and "files-1" in res.stderr
    assert invoke(populated.path, "logs", "ghost").exit_code == 1


@pytest.mark.parametrize("args", [["status"], ["status", "--all"], ["cost"], ["cost", "--since", "1h"]])
def test_missing_home_is_friendly_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "nowhere"
    res = invoke(home, *args)
    assert res.exit_code == 0 and EMPTY_FLEET in res.stdout
    assert not home.exists()


def test_missing_home_json_and_unknown_agent(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    data = json.loads(invoke(home, "status", "--json").stdout)
    assert data["agents"] == [] and data["fleet"]["agents"] == 0
    res = invoke(home, "status", "someone")
    assert res.exit_code == 1 and EMPTY_FLEET in res.stderr
    assert not home.exists()


def test_empty_fleet_database(tmp_path: Path) -> None:
    async def create() -> None:
        async with SqliteStore(tmp_path / "home" / "fleet.db"):
            pass

    anyio.run(create)
    res = invoke(tmp_path / "home", "status")
    assert res.exit_code == 0 and res.stdout.strip() == EMPTY_FLEET


def test_cost_groups(populated: Home) -> None:
    res = invoke(populated.path, "cost")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "cost (all time)" in out and "7 turns" in out
    assert "by agent" in out and "by runner" in out and "by model" in out
    rows = [line.split() for line in out.splitlines()]
    echo = next(r for r in rows if r and r[0] == "echo-1")
    assert echo[-1] == "?" and echo[3] == "2"  # 2 turns, cost unknown: '?' not $0
    files = next(r for r in rows if r and r[0] == "files-1")
    assert files[2] == "claude-sonnet-4-5" and files[-1] == "$0.0421"
    command = next(r for r in rows if r and r[0] == "command")
    assert command[-3:] == ["$0.0421", "+", "?"]
    data = json.loads(invoke(populated.path, "cost", "--json").stdout)
    assert data["total"]["turns"] == 7 and data["total"]["cost_usd"] == 0.0421
    assert data["total"]["unpriced_turns"] == 6 and data["total"]["tokens"]["input"] == 12_345
    assert {g["name"] for g in data["by_model"]} == {"claude-sonnet-4-5", "-"}


def test_cost_since(populated: Home) -> None:
    assert "7 turns" in invoke(populated.path, "cost", "--since", "1h").stdout
    later = invoke(populated.path, "cost", "--since", "2999-01-01")
    assert later.exit_code == 0 and "No turns since 2999-01-01" in later.stdout
    bad = invoke(populated.path, "cost", "--since", "yesterday")
    assert bad.exit_code == 2 and "30m" in bad.stderr


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("90m", now) == now - 5400
    assert parse_since("2d", now) == now - 2 * 86400
    assert parse_since("1.5h", now) == now - 5400
    assert parse_since("2026-11-20") < parse_since("2026-11-20T09:30")


def test_stalled_and_gone_agents_are_flagged() -> None:
    from agent_fleet_mcp.cli.render import status_cell
    from agent_fleet_mcp.reader_models import AgentStatus

    base: dict[str, Any] = {
        "name": "x", "status": "running", "runner": "command", "model": None, "turn": 1, "turn_status": "running"
    }  # fmt: skip
    stalled = AgentStatus(**base, id="ag_1", stalled=True, idle_s=300.0)
    assert status_cell(stalled).plain == "running ⚠ stalled 5m 00s"
    idle: dict[str, Any] = {**base, "status": "idle", "turn_status": "succeeded"}
    gone = AgentStatus(**idle, id="ag_2", process_gone=True)
    assert status_cell(gone).plain == "idle · unrecorded"
