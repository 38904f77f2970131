"""Fleets on real git repositories: a user's checkout (tests/worktrees/conftest.py), a fleet home whose catalog is
this folder's agents (runner `command`: `editor` edits files as its prompt says, `reader` is readonly), and a helper
that waits for agents to finish."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_fleet_mcp.config import Settings
from agent_fleet_mcp.fleet import Fleet
from agent_fleet_mcp.store.sqlite import SqliteStore
from agent_fleet_mcp.trust import trust_files
from agent_fleet_mcp.waits import wait_for

HERE = Path(__file__).parent
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.invalid",
    "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_OPTIONAL_LOCKS": "0",
}  # fmt: skip


def git(cwd: Path | str, *args: str, check: bool = True) -> str:
    """git as a user with no git configuration runs it."""
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's checkout: main with one commit (README, src/app.py, a .gitignore for *.log)."""
    r = tmp_path / "user repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    write(r, "README.md", "# sample\n")
    write(r, "src/app.py", "".join(f"line {i}\n" for i in range(1, 21)))
    write(r, ".gitignore", "*.log\n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "initial")
    return r


@pytest.fixture
def iso_settings(tmp_path: Path, repo: Path) -> Settings:
    home = tmp_path / "home"
    env = dict(os.environ)
    env.pop("CLAUDECODE", None)
    env.update(AGENT_FLEET_HOME=str(home), AGENT_FLEET_AGENTS=str(HERE / "agents"), AGENT_FLEET_FORKSERVER_WARM="0")
    trust_files(home, sorted((HERE / "agents").glob("*.md")))
    return Settings(home=home, max_concurrent=4, project_dir=repo, env=env, kill_grace_s=1.0, poll_interval_s=0.05)


@pytest.fixture
async def fleet(iso_settings: Settings) -> AsyncIterator[Fleet]:
    async with SqliteStore(iso_settings.db_path) as store:
        f = Fleet(iso_settings, store)
        async with f.running():
            yield f


async def finish(fleet: Fleet, *names: str, timeout_s: float = 60.0) -> None:
    """Wait until the agents have no queued or running turn (a generous deadline for a loaded CI box)."""
    res = await wait_for(fleet, agents=list(names), timeout_s=timeout_s)
    assert res.done, f"agents still busy after {timeout_s}s: {res.still_running}"


def worktree_list(repo: Path) -> list[str]:
    """The worktree paths `git worktree list` shows in the user's checkout (the checkout itself first)."""
    return [ln.removeprefix("worktree ") for ln in git(repo, "worktree", "list", "--porcelain").splitlines()
            if ln.startswith("worktree ")]  # fmt: skip


def branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").splitlines()
