"""Fixtures of the CLI-runner tests: a TurnRequest factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_fleet_mcp.runners.base import TurnRequest
from agent_fleet_mcp.spec import AgentSpec

from .helpers import PROJ, MakeRequest


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
