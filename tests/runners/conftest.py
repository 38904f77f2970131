"""Fixtures of the CLI-runner tests: a TurnRequest factory, a folder holding stub CLIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.runners import headless
from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.spec import AgentSpec

from .helpers import PROJ, CliBin, MakeRequest, fake_exe


@pytest.fixture
def no_repo_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkout's own .tools folder is hidden from the CLI lookup."""
    monkeypatch.setattr(headless, "REPO_TOOLS_BIN", tmp_path / "no-such-dir")


@pytest.fixture
def cli_bin(tmp_path: Path, no_repo_tools: None) -> CliBin:
    """``cli_bin("codex")``: the folder holding a stub ``codex`` (the checkout's .tools is hidden)."""
    return lambda name: fake_exe(tmp_path / "bin", name).parent


@pytest.fixture
def make_request(tmp_path: Path) -> MakeRequest:
    """``make_request(runner, turn=1, session_id=None, cwd=PROJ, env=None, **spec_fields)``; one agent_dir per
    test, so the cost/usage ledgers of consecutive turns meet."""
    agent_dir = tmp_path / "agent"

    def make(
        runner: str,
        *,
        turn: int = 1,
        session_id: str | None = None,
        cwd: Path = PROJ,
        env: dict[str, str] | None = None,
        prompt: str = "do the task",
        **spec: Any,
    ) -> TurnRequest:
        return TurnRequest(
            agent_id="ag_1",
            agent_name="worker",
            turn=turn,
            prompt=prompt,
            spec=AgentSpec(runner=runner, **spec),  # type: ignore[arg-type]
            cwd=cwd,
            agent_dir=agent_dir,
            session_id=session_id,
            env=env if env is not None else {"PATH": "/usr/bin:/bin", "HOME": "/home/dev"},
        )

    return make
