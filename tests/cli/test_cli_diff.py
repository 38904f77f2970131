"""`agent-fleet diff AGENT` and the worktree part of `agent-fleet status AGENT`, on a fleet home whose agents
worked in real git worktrees (the `scribe` command agent writes files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files
from agent_fleet_mcp.waits import wait_for

from .conftest import TEST_AGENTS, Home, cli_argv, invoke, run_in_pty, subprocess_env

GIT_ENV = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x.invalid", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@x.invalid"}  # fmt: skip


def git(repo: Path, *args: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **GIT_ENV}
    subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=True)


async def _populate(settings: Settings) -> None:
    async with SqliteStore(settings.db_path) as store:
        fleet = Fleet(settings, store)
        async with fleet.running():
            await fleet.create_agent(name="w1", template="scribe", prompt="set app.py x = 2\nset notes.txt hi")
            await fleet.create_agent(name="w2", template="scribe", prompt="set app.py x = 3")
            await fleet.create_agent(name="plain", template="scribe", prompt="set here.txt x", isolation="none")
            assert (await wait_for(fleet, timeout_s=30)).done


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> Home:
    base = tmp_path_factory.mktemp("cli-diff")
    project = base / "project"
    project.mkdir()
    (project / "app.py").write_text("x = 1\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
    env.update(AGENT_FLEET_HOME=str(base / "home"), AGENT_FLEET_AGENTS=str(TEST_AGENTS))
    env["AGENT_FLEET_FORKSERVER_WARM"] = "0"
    trust_files(base / "home", sorted(TEST_AGENTS.glob("*.md")))
    settings = Settings(home=base / "home", max_concurrent=4, project_dir=project, env=env, poll_interval_s=0.05)
    anyio.run(_populate, settings)
    return Home(base / "home", env)


def test_diff_prints_a_plain_unified_diff_when_piped(worked: Home) -> None:
    res = invoke(worked.path, "diff", "w1")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "diff --git a/app.py b/app.py" in out and "-x = 1\n+x = 2\n" in out and "+hi\n" in out
    assert "\x1b[" not in out  # no colour codes in a pipe


def test_diff_is_coloured_on_a_terminal(worked: Home) -> None:
    env = subprocess_env(worked.path, worked.env)
    env.pop("NO_COLOR")
    code, screen = run_in_pty(cli_argv("diff", "w1"), env, seconds=60, interrupt=False)
    assert code == 0 and "+x = 2" in screen and "+hi" in screen and "\x1b[" in screen, screen


def test_diff_of_an_agent_without_worktree_is_exit_1(worked: Home) -> None:
    res = invoke(worked.path, "diff", "plain")
    assert res.exit_code == 1 and "no worktree" in res.output
    res = invoke(worked.path, "diff", "nobody")
    assert res.exit_code == 1 and "no agent named" in res.output


def test_status_of_an_isolated_agent_shows_branch_base_changes_and_overlaps(worked: Home) -> None:
    res = invoke(worked.path, "status", "w1")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "branch fleet/w1" in out and "+2 -1, 2 files" in out and "overlaps: w2" in out
    assert "notes.txt" in out and "agent-fleet diff w1" in out
    assert "worktree" not in invoke(worked.path, "status", "plain").output.split("transcript")[-1]


def test_status_json_has_the_workspace(worked: Home) -> None:
    import json

    res = invoke(worked.path, "status", "w2", "--json")
    data = json.loads(res.output)
    assert data["workspace"]["branch"] == "fleet/w2" and data["workspace"]["files"]["shown"] == ["app.py"]
    assert data["agent"]["changes"] == "+1 -1, 1 file" and data["agent"]["overlaps"] == ["w1"]


def test_diff_view_colours_by_line_kind() -> None:
    from agent_fleet_mcp.cli.render import diff_view

    text = diff_view("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same\n")
    styles = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styles["-old\n"] == "red" and styles["+new\n"] == "green" and styles["@@ -1 +1 @@\n"] == "cyan"
    assert styles["--- a/x\n"] == "bold" and styles["+++ b/x\n"] == "bold" and " same\n" not in styles
    assert text.plain.endswith(" same\n")


def test_status_table_has_a_changes_column_with_overlaps(worked: Home) -> None:
    out = invoke(worked.path, "status").output
    assert "changes" in out.splitlines()[0]
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "+2 -1, 2 files ⚠ w2" in lines["w1"] and "+1 -1, 1 file ⚠ w1" in lines["w2"]
    assert "⚠" not in lines["plain"]


def test_diff_view_cannot_drive_the_terminal() -> None:
    """An agent writes terminal escapes into a file (set the window title, write the clipboard with OSC 52): the
    coloured diff shows them as text and sends no escape of its own making to the terminal."""
    from rich.console import Console

    from agent_fleet_mcp.cli.render import diff_view

    attack = "+\x1b]0;pwned\x07 \x1b]52;c;ZWNobyBoaQ==\x07 \x1b[2J\x9b31m\n"
    console = Console(force_terminal=True, color_system="truecolor", width=200)
    with console.capture() as cap:
        console.print(diff_view("@@ -0,0 +1 @@\n" + attack), end="")
    out = cap.get()
    assert "\x1b]" not in out and "\x1b[2J" not in out and "\x07" not in out and "\x9b" not in out
    assert "pwned" in out and "ZWNobyBoaQ==" in out
