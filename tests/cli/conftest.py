"""A fleet home populated once by REAL command-runner agents (echo, failer, a run_agents DAG), for the CLI tests
to read; plus helpers to run the CLI in-process (click's CliRunner), as a real subprocess, and in a pty."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from agent_fleet_mcp.batches import RunRequest
from agent_fleet_mcp.cli import main
from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.models import TurnStatsUpdate
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files
from agent_fleet_mcp.waits import wait_for

TEST_AGENTS = Path(__file__).parents[1] / "agents"
READS = [f"src/mod_{i:02d}.py" for i in range(25)]
WRITES = ["out/report.md", "out/data.json"]


@dataclass(frozen=True)
class Home:
    path: Path
    env: dict[str, str]


def cli_env(home: Path, **extra: str) -> dict[str, str | None]:
    """The environment the CLI runs with: the fleet home, a wide plain terminal."""
    return {"AGENT_FLEET_HOME": str(home), "COLUMNS": "200", "FORCE_COLOR": None, "NO_COLOR": "1", **extra}


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=cli_env(home), catch_exceptions=False)


def cli_argv(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("agent-fleet")
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-c", "from agent_fleet_mcp.cli import main; main()", *args]


def subprocess_env(home: Path, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k != "FORCE_COLOR"}
    env.update(AGENT_FLEET_HOME=str(home), COLUMNS="200", NO_COLOR="1")
    return env


def run_in_pty(
    argv: list[str],
    env: dict[str, str],
    *,
    seconds: float,
    rows: int = 40,
    cols: int = 160,
    until: Callable[[str], bool] | None = None,
    interrupt: bool = True,
) -> tuple[int, str]:
    """Run argv on a pseudo-terminal until what it drew satisfies ``until`` (at most ``seconds``; without
    ``until``, for ``seconds``), then SIGINT it (``interrupt``) or let it end by itself. Returns (exit code,
    everything it drew). A process that does not end is failed with what it drew and its threads' stacks."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**env, "COLUMNS": str(cols), "LINES": str(rows), "TERM": "xterm-256color", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def pump(deadline: float, done: Callable[[str], bool] | None = None) -> None:
        while time.monotonic() < deadline:
            if done is not None and done(screen.decode("utf-8", errors="replace")):
                return
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            screen.extend(chunk)

    try:
        pump(time.monotonic() + seconds, until)
        if interrupt:
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60  # generous: a busy 2-core CI box once took over 15 s to let it exit
        while proc.poll() is None and time.monotonic() < deadline:
            pump(time.monotonic() + 0.1)
        if proc.poll() is None:  # hung: faulthandler prints every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            pump(time.monotonic() + 3)
            raise AssertionError(f"{argv[1:]} did not end; what it drew:\n{screen.decode('utf-8', 'replace')[-6000:]}")
        pump(time.monotonic() + 0.2)
        code = proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, screen.decode("utf-8", errors="replace")


async def _populate(settings: Settings) -> None:
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="echo-1", template="echo", prompt="hello fleet")
            await fleet.create_agent(name="failer-1", template="failer", prompt="disk full")
            await fleet.create_agent(name="files-1", template="echo", prompt="touch files")
            batch = await fleet.batches.start(
                [
                    RunRequest("echo", "alpha", "a"),
                    RunRequest("echo", "beta", "b"),
                    RunRequest("echo", "merge {{a}} + {{b}}", "c", ("a", "b")),
                ]
            )
            assert (await wait_for(fleet, batch=batch, timeout_s=30)).done
            assert (await wait_for(fleet, timeout_s=30)).done
            await fleet.command_agent("echo-1", "second [bold]turn[/bold]")  # rich markup must print as it is
            assert (await wait_for(fleet, agents=["echo-1"], timeout_s=30)).done
        files = await store.get_agent("files-1")
        assert files is not None
        turn = await store.get_turn(files.id, 1)
        assert turn is not None
        await store.update_turn_stats(
            files.id, 1,
            TurnStatsUpdate(
                reads=READS, writes=WRITES, input_tokens=12_345, output_tokens=678, cost_usd=0.0421,
                model="claude-sonnet-4-5", tool_calls=27, cache_read_tokens=turn.cache_read_tokens,
                cache_write_tokens=turn.cache_write_tokens, context_tokens=turn.context_tokens,
                activity=turn.activity, last_event_at=turn.last_event_at,
            ),
        )  # fmt: skip


@pytest.fixture(scope="session")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Home:
    base = tmp_path_factory.mktemp("cli-fleet")
    project = base / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
    env.update(AGENT_FLEET_HOME=str(base / "home"), AGENT_FLEET_AGENTS=str(TEST_AGENTS))
    trust_files(base / "home", sorted(TEST_AGENTS.glob("*.md")))
    settings = Settings(home=base / "home", max_concurrent=4, project_dir=project, env=env, poll_interval_s=0.05)
    anyio.run(_populate, settings)
    return Home(base / "home", env)
