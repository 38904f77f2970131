"""The CLI against a fleet that is running right now (a supervisor in this test, real agent processes): the real
`agent-fleet` executable as a subprocess, `logs -f` following a sleeper to its end, `watch` in a pseudo-terminal
until Ctrl-C, and a turn whose process ended while no server was recording it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from agent_fleet_mcp import reader
from agent_fleet_mcp.cli import main
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.waits import wait_for

from .conftest import cli_argv, cli_env, run_in_pty, subprocess_env

pytestmark = pytest.mark.anyio

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def test_status_and_follow_while_agents_run(
    settings: Settings, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    env = subprocess_env(settings.home, fleet_env)
    gate = tmp_path / "gate-open"  # `sleepy` runs until the test opens it, however slow the machine
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="sleepy", template="gate", prompt=str(gate))
            await fleet.create_agent(name="broken", template="failer", prompt="no disk")
            status = await anyio.run_process(cli_argv("status"), env=env, check=False)
            out = status.stdout.decode()
            assert status.returncode == 0, status.stderr.decode()
            row = next(line for line in out.splitlines() if line.startswith("sleepy"))
            assert "running" in row
            async with await anyio.open_process(cli_argv("logs", "sleepy", "-f"), env=env) as follow:
                assert follow.stdout is not None
                seen = b""
                async for chunk in follow.stdout:  # following live: the turn is still running
                    seen += chunk
                    if b"text: tick 1" in seen:
                        break
                gate.touch()
                async for chunk in follow.stdout:
                    seen += chunk
                assert await follow.wait() == 0
            log = seen.decode()
            assert "text: waiting for" in log and "text: tick 1" in log and "text: done" in log
            assert "RESULT: (the text above" in log and "── turn 1 succeeded" in log
            assert (await fleet.store.get_agent("sleepy")) is not None
            assert (await wait_for(fleet, agents=["broken"], timeout_s=30)).done
            after = await anyio.run_process(cli_argv("status", "--json"), env=env, check=False)
            assert '"name": "broken"' in after.stdout.decode() and "exited with code 3" in after.stdout.decode()


async def test_watch_in_a_terminal_until_ctrl_c(settings: Settings, fleet_env: dict[str, str], tmp_path: Path) -> None:
    env = subprocess_env(settings.home, fleet_env)

    def drawn(screen: str) -> bool:
        text = ANSI.sub("", screen)
        return bool(re.search(r"long-sleeper\s+command\s+-\s+running", text)) and "✗ boom: exit:" in text

    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="long-sleeper", template="gate", prompt=str(tmp_path / "never"))
            await fleet.create_agent(name="boom", template="failer", prompt="out of memory")
            code, screen = await anyio.to_thread.run_sync(
                lambda: run_in_pty(cli_argv("watch", "--interval", "0.2"), env, seconds=60.0, until=drawn)
            )
            await fleet.delete_agents("all")
    text = ANSI.sub("", screen)
    assert code == 0, text[-2000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert "agent-fleet watch" in text
    assert re.search(r"long-sleeper\s+command\s+-\s+running", text), text[-2000:]
    assert re.search(r"boom\s+command\s+-\s+failed", text)
    assert "✗ boom: exit: the process exited with code 3: boom: out of memory" in text
    assert "\x1b[?1049h" in screen and "\x1b[?1049l" in screen  # alternate screen entered and restored


async def test_follow_ends_when_the_process_dies_unrecorded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "GONE_GRACE_S", 0.3)
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="orphan", template="sleeper", prompt="0.6")
            [turn] = await store.turns_with_status("running")
            files = fleet.turn_files(turn.agent_id, turn.n)
        # no supervisor any more: the process runs on, and nobody records its end

    def cli(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(main, list(args), env=cli_env(settings.home), catch_exceptions=False)
        return res.exit_code, res.stdout

    code, out = await anyio.to_thread.run_sync(lambda: cli("logs", "orphan", "-f"))
    assert code == 0
    assert "text: done" in out and "RESULT: (the text above" in out
    assert "no server has recorded it yet" in out
    # the turn ran ~0.6 s; let a few seconds pass with no server before anyone looks
    assert turn.started_at is not None
    ran_s = files.exit.stat().st_mtime - turn.started_at
    while time.time() - files.exit.stat().st_mtime < 3.0:
        await anyio.sleep(0.1)
    code, out = await anyio.to_thread.run_sync(lambda: cli("status"))
    assert code == 0 and "process gone" not in out and "0 running" in out, out
    assert re.search(r"orphan\s+command\s+-\s+idle · unrecorded", out), out
    assert "unrecorded: orphan (ended with no server up)" in out
    code, out = await anyio.to_thread.run_sync(lambda: cli("status", "--json"))
    [row] = json.loads(out)["agents"]
    assert (row["status"], row["turn_status"], row["process_gone"]) == ("idle", "succeeded", True)
    assert abs(row["elapsed_s"] - ran_s) < 0.2, (row["elapsed_s"], ran_s)  # the real duration, not "until now"
    code, out = await anyio.to_thread.run_sync(lambda: cli("status", "orphan", "--json"))
    assert json.loads(out)["turns"][0]["status"] == "succeeded"
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():  # a server starting up closes the turn from its transcript
            assert (await wait_for(fleet, agents=["orphan"], timeout_s=10)).done
    code, out = await anyio.to_thread.run_sync(lambda: cli("status"))
    assert "process gone" not in out and "unrecorded" not in out and re.search(r"orphan\s+command\s+-\s+idle", out)
    code, out = await anyio.to_thread.run_sync(lambda: cli("status", "--json"))
    [row] = json.loads(out)["agents"]
    assert row["turn_status"] == "succeeded" and not row["process_gone"]
    assert abs(row["elapsed_s"] - ran_s) < 0.2, (row["elapsed_s"], ran_s)  # recorded with its real end time
