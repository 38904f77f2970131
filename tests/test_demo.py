"""The offline demo, end to end: scripted model + real worker processes + real MCP server over stdio."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_offline_and_edits_the_sample() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from agent_fleet_mcp.demo import run_demo; sys.exit(run_demo())"],
        capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "offline: scripted Messages API" in out
    for needle in (
        "list_task_agents", "run_agents", "get_agent_status", "get_agent_output", "merge_agent", "delete_agent"
    ):  # fmt: skip
        assert f"▶ {needle}" in out
    assert "batch succeeded" in out
    assert "+LOW_STOCK_THRESHOLD = int(os.environ.get('LOW_STOCK_THRESHOLD', '3'))" in out
    # two builders changed the same line, each in its own worktree: the overlap is flagged, one merges, one conflicts
    assert "the checkout is still untouched" in out and "⚠ overlaps: build-" in out
    assert "merges cleanly" in out and "merged fleet/build-" in out
    assert "conflict in inventory/stock.py: also changed by build-" in out
    assert "checkout untouched: git status clean, HEAD unchanged" in out
    assert "deleted 6 agents" in out and "demo complete" in out
